"""The test double of the mail service, with the real ``IpcClient``'s interface.

``FakeServiceClient`` implements the op table of ``core/ipc/ops.py`` in memory (parameters are
checked with the same ``check_params``), answers asynchronously through the event loop like the
socket would, and pushes the change events the service publishes. Widget tests and the scale
benchmarks drive the console against it (the screenshots do not: tools/screenshots.py photographs
a real running service); tests/gui/test_fake_service.py
checks that it implements every op the console sends and answers in the real service's shapes.
``external(op, params)`` plays another admin (``winpop``, a second console): the change happens
and only the events tell us.
"""
from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QAbstractSocket

from core import passwords
from core.catalog import MAIL_LISTENERS, SETTINGS, TlsMode, resolve, shown
from core.errors import AlreadyExists, Conflict, Invalid, Locked, MailError, NotFound, PasswordRefused, Unavailable
from core.ipc.ops import STATS_MAX_MINUTES, STATS_SERIES, check_params
from core.ipc.wire import to_wire
from core.model import DomainInfo, MailboxInfo
from core.names import check_token_name, display_domain, normalize_domain, split_address
from gui.ipc_client import socket_error_text

OnOk = Callable[[Any], None]
OnErr = Callable[[MailError], None]


@dataclass
class _Mailbox:
    name: str
    domain: str
    locked: bool = False
    message_count: int = 0
    total_bytes: int = 0
    quota_bytes: int | None = None
    has_user: bool = True
    password: str = ""


@dataclass
class _Domain:
    name: str
    locked: bool = False
    mailboxes: dict[str, _Mailbox] = field(default_factory=dict)
    _sorted: list[str] | None = None

    def sorted_names(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.mailboxes)
        return self._sorted


# The listeners of the catalog: (name, kind, default port, implicit TLS on the port: the
# service's listener "tls" field; STARTTLS ports say False).
LISTENERS = tuple((spec.name, spec.protocol, spec.default_port, spec.tls == TlsMode.IMPLICIT)
                  for spec in MAIL_LISTENERS)


class FakeService:
    """The service's state and op implementations, without any socket."""

    def __init__(self, *, hostname: str = "mail.example.com") -> None:
        self.hostname = hostname
        self.settings: dict[str, Any] = {name: spec.default for name, spec in SETTINGS.items()}
        self.settings["mailroot"] = "/var/lib/pop3-service/mailroot"
        # As core.settings: 0 for a setting never stored, one more with every change of its value.
        self.versions: dict[str, int] = dict.fromkeys(SETTINGS, 0)
        self.versions["mailroot"] = 1
        self.domains: dict[str, _Domain] = {}
        self._domain_names: list[str] | None = None
        self.state = "running"
        self.listener_states = {name: "running" for name, *_ in LISTENERS}
        # Named as service.counters.Counters names them (the service shows those it has counted).
        self.counters = {"pop3.sessions": 0, "pop3.logons": 0, "pop3.logon_failures": 0,
                         "pop3.messages_retrieved": 0, "smtp_accepted": 0, "smtp_queued": 0}
        self.store_problems: list[dict[str, str]] = []   # service.status store_problems items
        self.audit: list[dict[str, Any]] = []
        self.log: list[dict[str, Any]] = []            # log.recent, newest first
        self.tls: dict[str, Any] = {
            "subject": f"CN={hostname}", "names": [hostname, "localhost"], "not_before": "2026-03-01T09:00:00+00:00",
            "not_after": "2028-03-01T09:00:00+00:00", "path": "/var/lib/pop3-service/tls/server.crt",
            "days_left": 730, "expires_soon": False, "self_signed": True,
            "fingerprint": "3F:A1:9C:07:5B:E2:48:D0:11:6A:C3:92:7E:04:B8:5D:"
                           "2C:F9:60:A7:1E:83:D4:56:9B:0F:E7:32:C8:4A:15:6D"}
        self.bans: list[dict[str, Any]] = []
        # stats.history: a day of per-minute values per series, oldest first (None: not running).
        self.history: dict[str, list[int | None]] = {name: [None] * STATS_MAX_MINUTES for name in STATS_SERIES}
        self.tokens: list[dict[str, Any]] = []
        self.key_problem = ""
        self.queue: list[dict[str, Any]] = []
        self.relay_results: list[dict[str, Any]] = [
            {"test": name, "trick": name, "mail_from": "<test@example.org>", "rcpt_to": f"<{rcpt}>",
             "recipient": rcpt, "reply": "554 5.7.1 Relay denied", "verdict": "refused", "relayed": False}
            for name, rcpt in (("plain", "relaytest@example.org"), ("percent hack", "relaytest%example.org@{host}"),
                               ("bang path", "example.org!relaytest@{host}"),
                               ("quoted", '"relaytest@example.org"@{host}'),
                               ("source route", "@{host}:relaytest@example.org"))]

    # -- helpers ---------------------------------------------------------------------------------
    def domain_names(self) -> list[str]:
        if self._domain_names is None:
            self._domain_names = sorted(self.domains)
        return self._domain_names

    def _domain(self, name: str) -> _Domain:
        key = normalize_domain(name)
        if key not in self.domains:
            raise NotFound(f"There is no domain '{name}'.")
        return self.domains[key]

    def _mailbox(self, address: str) -> _Mailbox:
        local, dom = split_address(address, self.settings["auth"])
        domain = self._domain(dom)
        if local not in domain.mailboxes:
            raise NotFound(f"There is no mailbox '{address}'.")
        return domain.mailboxes[local]

    def domain_info(self, d: _Domain) -> dict[str, Any]:
        boxes = d.mailboxes.values()
        return to_wire(DomainInfo(name=d.name, display_name=display_domain(d.name), locked=d.locked,
                                  mailbox_count=len(d.mailboxes),
                                  message_count=sum(m.message_count for m in boxes),
                                  total_bytes=sum(m.total_bytes for m in boxes)))

    def mailbox_info(self, m: _Mailbox) -> dict[str, Any]:
        return to_wire(MailboxInfo(name=m.name, domain=m.domain, address=f"{m.name}@{m.domain}",
                                   locked=m.locked, domain_locked=self.domains[m.domain].locked,
                                   message_count=m.message_count, total_bytes=m.total_bytes,
                                   quota_bytes=m.quota_bytes, has_user=m.has_user))

    def status(self) -> dict[str, Any]:
        listeners = [{"name": name, "kind": kind, "state": self.listener_states[name],
                      "address": "0.0.0.0", "port": int(self.settings.get(
                          next(s.port_setting for s in MAIL_LISTENERS if s.name == name), port)),
                      "tls": tls, "sessions": 0, "error": None}
                     for name, kind, port, tls in LISTENERS]
        return {"state": self.state, "listeners": listeners, "counters": dict(self.counters),
                "disk": [{"what": "database, data directory and mail root", "path": "/var/lib/pop3-service",
                          "free_bytes": 40 * 2**30, "total_bytes": 100 * 2**30, "state": "ok"}],
                "store_problems": {"total": len(self.store_problems), "items": list(self.store_problems)}}

    @staticmethod
    def _page(names: list[str], p: dict[str, Any]) -> tuple[int, list[str]]:
        flt = (p.get("filter") or "").lower()
        if flt:
            names = [n for n in names if flt in n]
        offset, limit = max(0, p.get("offset") or 0), max(0, p.get("limit") or 0)
        return len(names), names[offset: offset + limit if limit else None]

    # -- bulk set-up for tests and benchmarks (no events) ----------------------------------------
    def seed(self, domains: dict[str, list[str]] | None = None, *, locked: tuple[str, ...] = ()) -> None:
        for dname, boxes in (domains or {}).items():
            d = self.domains.setdefault(dname, _Domain(dname))
            d.locked = dname in locked
            for i, b in enumerate(boxes):
                d.mailboxes[b] = _Mailbox(b, dname, locked=f"{b}@{dname}" in locked,
                                          message_count=(i * 7) % 23, total_bytes=((i * 7) % 23) * 5300)
            d._sorted = None
        self._domain_names = None

    def seed_bulk(self, n_domains: int, per_domain: int, *, big: tuple[str, int] | None = None) -> None:
        for i in range(n_domains):
            name = f"d{i:05d}.example.net"
            d = _Domain(name)
            for j in range(per_domain):
                d.mailboxes[f"user{j:05d}"] = _Mailbox(f"user{j:05d}", name, message_count=j % 9,
                                                       total_bytes=(j % 9) * 4096)
            self.domains[name] = d
        if big:
            name, count = big
            d = _Domain(name)
            for j in range(count):
                d.mailboxes[f"u{j:06d}"] = _Mailbox(f"u{j:06d}", name, message_count=j % 13,
                                                    total_bytes=(j % 13) * 3000)
            self.domains[name] = d
        self._domain_names = None

    # -- the op table ----------------------------------------------------------------------------
    def call(self, op: str, params: dict[str, Any]) -> tuple[Any, list[tuple[str, Any]]]:
        """Run one op; return its result and the events it publishes."""
        p = check_params(op, params)
        handler = getattr(self, "op_" + op.replace(".", "_"))
        events: list[tuple[str, Any]] = []
        result = handler(p, events)
        if op not in ("events.subscribe",) and events:
            self.audit.insert(0, {"at": "2026-01-01T12:00:00", "actor": "admin", "op": op,
                                  "target": str(p.get("name") or p.get("address") or ""),
                                  "detail": "", "outcome": "ok"})
        return result, events

    def op_server_info(self, p: dict, ev: list) -> Any:
        return {"hostname": self.settings.get("hostname") or self.hostname, "version": "0.1.0",
                "auth": self.settings["auth"], "keystore": self.settings["keystore"],
                "key_problem": self.key_problem, "data_dir": "/var/lib/pop3-service",
                "mailroot": self.settings["mailroot"],
                "domains": len(self.domains), "tls": dict(self.tls),
                "admin_tcp": {"state": "running" if self.settings.get("admin_tcp_port") else "off",
                              "address": "0.0.0.0", "port": int(self.settings.get("admin_tcp_port") or 0),
                              "error": None}, **self.status()}

    def op_service_status(self, p: dict, ev: list) -> Any:
        return self.status()

    def op_service_control(self, p: dict, ev: list) -> Any:
        # As service/daemon.py control(): per listener, pause only a running one, resume a paused one.
        action = p["action"].strip().lower()
        if action not in ("start", "stop", "pause", "resume", "restart"):
            raise Invalid(f"Unknown action '{action}'; use one of: start, stop, pause, resume, restart.")
        name = "" if p["listener"] == "all" else p["listener"]
        if name and name not in self.listener_states:
            raise NotFound(f"There is no listener '{name}'. Listeners: {', '.join(self.listener_states)}.")
        for n in [name] if name else list(self.listener_states):
            old = self.listener_states[n]
            if action in ("start", "restart", "resume") and (action != "resume" or old == "paused"):
                self.listener_states[n] = "running"
            elif action == "stop" or (action == "pause" and old == "running"):
                self.listener_states[n] = "stopped" if action == "stop" else "paused"
        states = set(self.listener_states.values())
        self.state = "running" if "running" in states else ("paused" if "paused" in states else "stopped")
        status = self.status()
        ev.append(("service.state", status))
        return status

    def op_service_shutdown(self, p: dict, ev: list) -> Any:
        if not p["restart"]:
            self.state = "stopped"
            self.listener_states = dict.fromkeys(self.listener_states, "stopped")
        return {"stopping": True, "restart": p["restart"]}

    def _new_certificate(self, hostname: str) -> dict[str, Any]:
        self.tls.update(subject=f"CN={hostname}", names=[hostname], self_signed=True)
        return {k: v for k, v in self.tls.items() if k != "fingerprint"}

    def _certificate_paths_reset(self, ev: list) -> None:
        for name in ("tls_cert", "tls_key"):
            self._put_setting(name, "")
            ev.append(("settings.changed", {"name": name, "value": "", "version": self.versions[name]}))

    def op_tls_generate(self, p: dict, ev: list) -> Any:
        result = self._new_certificate(p["hostname"] or self.settings.get("hostname") or self.hostname)
        self._certificate_paths_reset(ev)
        return result

    def op_tls_import(self, p: dict, ev: list) -> Any:
        if not (p["cert"] or p["cert_path"]) or not (p["key"] or p["key_path"]):
            raise Invalid("Give the certificate and its private key as PEM text or as the path of a PEM file.")
        result = dict(self._new_certificate(self.hostname), self_signed=False)
        self.tls["self_signed"] = False
        self._certificate_paths_reset(ev)
        return result

    def op_auth_login(self, p: dict, ev: list) -> Any:
        return {"actor": "admin", "token": ""}   # on the Unix socket the peer is already admitted

    def op_settings_get(self, p: dict, ev: list) -> Any:
        if p["name"]:
            spec = resolve(p["name"])
            return {spec.name: shown(spec.name, self.settings[spec.name])}
        return {name: shown(name, value) for name, value in self.settings.items()}

    def op_settings_snapshot(self, p: dict, ev: list) -> Any:
        return {"values": {name: shown(name, value) for name, value in self.settings.items()},
                "versions": dict(self.versions)}

    def _put_setting(self, name: str, value: Any) -> int:
        """As core.settings.Settings.put: the version moves only when the value does."""
        if self.versions[name] == 0 or self.settings[name] != value:
            self.versions[name] += 1
        self.settings[name] = value
        return self.versions[name]

    def op_settings_describe(self, p: dict, ev: list) -> Any:
        return {"items": [spec.describe() for spec in SETTINGS.values()]}

    def op_settings_set(self, p: dict, ev: list) -> Any:
        spec = resolve(p["name"])
        if not spec.writable:
            raise Invalid(f"The setting '{spec.name}' cannot be changed here.")
        if spec.secret and p["value"] == shown(spec.name, "x"):
            return {"name": spec.name, "value": shown(spec.name, "x"), "restart": spec.restart,
                    "version": self.versions[spec.name]}   # unchanged
        value = spec.check(p["value"])
        if spec.secret and value and not str(value).startswith("sealed:"):
            value = "sealed:" + "x" * len(str(value))     # the service encrypts it
        expected = p["expected_version"]
        if expected is not None and expected != self.versions[spec.name] and (
                not self.versions[spec.name] or value != self.settings[spec.name]):
            now = shown(spec.name, self.settings[spec.name])
            raise Conflict(f"{spec.label} was changed by another administrator after you read it; it is now "
                           f"{'(none)' if now in ('', None) else now}. Nothing was changed. Apply again to "
                           "replace it with your value.")
        if spec.name == "auth" and self.domains and value != self.settings["auth"]:
            raise Conflict("The authentication method can be changed only while no domain exists.")
        if spec.name == "mailroot" and value != self.settings["mailroot"]:
            # As core.admin: an absolute path; with mail, the new folder must already hold it (the
            # fake has no files, so any message at all is refused).
            if not str(value).startswith("/"):
                raise Invalid(f"The root mail directory must be an absolute path, not '{value}'.")
            messages = sum(m.message_count for d in self.domains.values() for m in d.mailboxes.values())
            if messages:
                raise Conflict(f"The store holds {messages} messages and {messages} of them are not in {value}. "
                               "Nothing was changed: the service never moves mail by itself.")
        version = self._put_setting(spec.name, value)
        ev.append(("settings.changed", {"name": spec.name, "value": shown(spec.name, value), "version": version}))
        return {"name": spec.name, "value": shown(spec.name, value), "restart": spec.restart, "version": version}

    # The service's list order: the column, then the name (core/admin.py _order).
    _MAILBOX_SORT = {"size": lambda m: m.total_bytes, "messages": lambda m: m.message_count,
                     "state": lambda m: m.locked, "quota": lambda m: -1 if m.quota_bytes is None else m.quota_bytes}

    def _sorted(self, names: list[str], key: Callable[[str], Any] | None, descending: bool) -> list[str]:
        if key is None:
            return list(reversed(names)) if descending else names
        return sorted(names, key=lambda n: (key(n), n), reverse=descending)

    def op_domain_list(self, p: dict, ev: list) -> Any:
        sort = p["sort"]
        keys = {"count": lambda d: len(d.mailboxes), "mailboxes": lambda d: len(d.mailboxes),
                "messages": lambda d: sum(m.message_count for m in d.mailboxes.values()),
                "size": lambda d: sum(m.total_bytes for m in d.mailboxes.values()), "state": lambda d: d.locked}
        if sort not in keys and sort != "name":
            raise Invalid(f"Cannot sort by '{sort}'.")
        key = keys.get(sort)
        names = self._sorted(self.domain_names(), (lambda n: key(self.domains[n])) if key else None, p["descending"])
        total, names = self._page(names, p)
        return {"total": total, "offset": p["offset"], "items": [self.domain_info(self.domains[n]) for n in names]}

    def op_domain_get(self, p: dict, ev: list) -> Any:
        return self.domain_info(self._domain(p["name"]))

    def op_domain_add(self, p: dict, ev: list) -> Any:
        name = normalize_domain(p["name"])
        if name in self.domains:
            raise AlreadyExists(f"The domain {name} already exists.")
        self.domains[name] = d = _Domain(name)
        self._domain_names = None
        info = self.domain_info(d)
        ev.append(("domain.added", info))
        return info

    def op_domain_delete(self, p: dict, ev: list) -> Any:
        d = self._domain(p["name"])
        del self.domains[d.name]
        self._domain_names = None
        ev.append(("domain.deleted", {"name": d.name}))
        return {"name": d.name}

    def _set_domain_lock(self, p: dict, ev: list, locked: bool) -> Any:
        d = self._domain(p["name"])
        d.locked = locked
        info = self.domain_info(d)
        ev.append(("domain.changed", info))
        return info

    def op_domain_lock(self, p: dict, ev: list) -> Any:
        return self._set_domain_lock(p, ev, True)

    def op_domain_unlock(self, p: dict, ev: list) -> Any:
        return self._set_domain_lock(p, ev, False)

    def op_mailbox_list(self, p: dict, ev: list) -> Any:
        d = self._domain(p["domain"])
        sort = p["sort"]
        if sort not in self._MAILBOX_SORT and sort != "name":
            raise Invalid(f"Cannot sort by '{sort}'.")
        key = self._MAILBOX_SORT.get(sort)
        names = self._sorted(d.sorted_names(), (lambda n: key(d.mailboxes[n])) if key else None, p["descending"])
        total, names = self._page(names, p)
        return {"total": total, "offset": p["offset"], "domain": d.name,
                "items": [self.mailbox_info(d.mailboxes[n]) for n in names]}

    def op_mailbox_get(self, p: dict, ev: list) -> Any:
        return self.mailbox_info(self._mailbox(p["address"]))

    def op_mailbox_add(self, p: dict, ev: list) -> Any:
        local, dom = split_address(p["address"], self.settings["auth"])
        d = self._domain(dom)
        if local in d.mailboxes:
            raise AlreadyExists(f"The mailbox {local}@{dom} already exists.")
        create_user = self.settings["createuser"] if p["create_user"] is None else p["create_user"]
        if self.settings["auth"] == "passwordfile":
            create_user = True
            if not p["password"]:
                raise PasswordRefused(passwords.EMPTY)
        if p["password"] is not None:
            passwords.check_password(p["password"])   # the service's one rule, worded the same
        quota = SETTINGS["default_quota"].check(p["quota"]) if p["quota"] is not None \
            else self.settings["default_quota"]
        d.mailboxes[local] = m = _Mailbox(local, dom, quota_bytes=quota, has_user=bool(create_user),
                                          password=p["password"] or "")
        d._sorted = None
        info = self.mailbox_info(m)
        ev.append(("mailbox.added", info))
        ev.append(("domain.changed", self.domain_info(d)))
        return info

    def op_mailbox_delete(self, p: dict, ev: list) -> Any:
        m = self._mailbox(p["address"])
        d = self.domains[m.domain]
        del d.mailboxes[m.name]
        d._sorted = None
        address = f"{m.name}@{m.domain}"
        ev.append(("mailbox.deleted", {"address": address, "domain": m.domain, "name": m.name}))
        ev.append(("domain.changed", self.domain_info(d)))
        return {"address": address}

    def _set_mailbox_lock(self, p: dict, ev: list, locked: bool) -> Any:
        m = self._mailbox(p["address"])
        if not locked and self.domains[m.domain].locked:
            raise Locked(f"The domain {m.domain} is locked; unlock the domain instead.")
        m.locked = locked
        info = self.mailbox_info(m)
        ev.append(("mailbox.changed", info))
        return info

    def op_mailbox_lock(self, p: dict, ev: list) -> Any:
        return self._set_mailbox_lock(p, ev, True)

    def op_mailbox_unlock(self, p: dict, ev: list) -> Any:
        return self._set_mailbox_lock(p, ev, False)

    def op_mailbox_set_password(self, p: dict, ev: list) -> Any:
        m = self._mailbox(p["address"])
        m.password = passwords.check_password(p["password"])
        ev.append(("mailbox.changed", self.mailbox_info(m)))
        return {"address": f"{m.name}@{m.domain}"}

    def op_mailbox_set_quota(self, p: dict, ev: list) -> Any:
        m = self._mailbox(p["address"])
        quota = SETTINGS["default_quota"].check(p["quota"])
        if p["check_quota"] and m.quota_bytes not in (p["expected_quota"], quota):
            raise Conflict(f"The quota of {p['address']} was changed by another administrator after you read it.")
        m.quota_bytes = quota
        info = self.mailbox_info(m)
        ev.append(("mailbox.changed", info))
        return info

    def op_stat(self, p: dict, ev: list) -> Any:
        if p["domain"]:   # per mailbox of one domain (core/admin.py stat)
            d = self._domain(p["domain"])
            boxes = [d.mailboxes[n] for n in d.sorted_names()]
            return {"domain": d.name, "mailboxes": len(boxes), "messages": sum(m.message_count for m in boxes),
                    "bytes": sum(m.total_bytes for m in boxes), "locked": d.locked,
                    "items": [self.mailbox_info(m) for m in boxes], "counters": dict(self.counters)}
        boxes = [m for d in self.domains.values() for m in d.mailboxes.values()]
        return {"domains": len(self.domains), "mailboxes": len(boxes),
                "messages": sum(m.message_count for m in boxes), "bytes": sum(m.total_bytes for m in boxes),
                "items": [self.domain_info(self.domains[n]) for n in self.domain_names()],
                "counters": dict(self.counters)}

    def op_stats_history(self, p: dict, ev: list) -> Any:
        minutes = p["minutes"]
        if not 1 <= minutes <= STATS_MAX_MINUTES:
            raise Invalid(f"The history goes back 1 to {STATS_MAX_MINUTES} minutes (a day), not {minutes}.")
        return {"interval": 60, "end": int(time.time()) // 60 * 60,
                "series": {name: values[-minutes:] for name, values in self.history.items()}}

    def op_audit_list(self, p: dict, ev: list) -> Any:
        return {"items": self.audit[: p["limit"]]}

    def op_log_recent(self, p: dict, ev: list) -> Any:
        return {"level": self.settings["logging"], "items": self.log[: p["limit"]]}

    def op_ban_list(self, p: dict, ev: list) -> Any:
        return {"items": list(self.bans)}

    def op_ban_lift(self, p: dict, ev: list) -> Any:
        before = len(self.bans)
        self.bans = [b for b in self.bans if b["value"] != p["value"]]
        lifted = before - len(self.bans)
        if lifted:
            ev.append(("ban.lifted", {"value": p["value"]}))
        return {"lifted": lifted}

    def op_queue_list(self, p: dict, ev: list) -> Any:
        return {"items": [{k: v for k, v in q.items() if k not in ("headers", "body_preview")} for q in self.queue]}

    def _queued(self, ident: int) -> dict[str, Any]:
        for q in self.queue:
            if q["id"] == ident:
                return q
        raise NotFound(f"The queued message {ident} was just delivered or deleted.")

    def op_queue_show(self, p: dict, ev: list) -> Any:
        return dict(self._queued(p["id"]), body_truncated=False)

    def op_queue_retry(self, p: dict, ev: list) -> Any:
        targets = [self._queued(p["id"])] if p["id"] is not None else list(self.queue)
        for q in targets:
            q["next_attempt"] = "2026-03-02T09:20:00+00:00"
        return {"retried": len(targets)}

    def op_queue_delete(self, p: dict, ev: list) -> Any:
        q = self._queued(p["id"])
        self.queue.remove(q)
        return {"deleted": 1}

    def op_relay_test(self, p: dict, ev: list) -> Any:
        return {"items": [dict(t) for t in self.relay_results]}

    def op_admin_token_list(self, p: dict, ev: list) -> Any:
        return {"items": [dict(t) for t in self.tokens]}

    def op_admin_token_create(self, p: dict, ev: list) -> Any:
        name = check_token_name(p["name"])
        if any(t["name"] == name for t in self.tokens):
            raise AlreadyExists(f"There is already a token called '{name}'; revoke it first or choose another name.")
        info = {"id": len(self.tokens) + 1, "name": name, "created_by": "console", "last_used_from": None,
                "created_at": "2026-03-02T09:00:00+00:00", "last_used_at": None}
        self.tokens.append(info)
        return dict(info, token="p3t_" + secrets.token_urlsafe(32))

    def op_admin_token_revoke(self, p: dict, ev: list) -> Any:
        before = len(self.tokens)
        self.tokens = [t for t in self.tokens if t["name"] != p["name"]]
        if len(self.tokens) == before:
            raise NotFound(f"There is no token '{p['name']}'.")
        return {"revoked": before - len(self.tokens)}

    def op_import_windows(self, p: dict, ev: list) -> Any:
        raise Unavailable("Import is not available in the fake service.")

    def op_events_subscribe(self, p: dict, ev: list) -> Any:
        return {"subscribed": True}

    # -- things that happen without a request ----------------------------------------------------
    def deliver(self, address: str, size: int) -> list[tuple[str, Any]]:
        m = self._mailbox(address)
        m.message_count += 1
        m.total_bytes += size
        self.counters["smtp_accepted"] += 1
        return [("mailbox.changed", self.mailbox_info(m)),
                ("domain.changed", self.domain_info(self.domains[m.domain]))]


class FakeServiceClient(QObject):
    """``IpcClient``'s interface over a ``FakeService``: async answers and pushed events."""

    event_received = Signal(str, object)
    connected = Signal()
    disconnected = Signal()
    certificate_unknown = Signal(str, str)
    auth_failed = Signal(str)

    def __init__(self, service: FakeService | None = None, *, latency_ms: int = 0,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service or FakeService()
        self.latency_ms = latency_ms
        self.data_dir = Path("/var/lib/pop3-service")
        self.location = str(self.data_dir / "admin.sock")
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._is_connected = False
        self._reachable = True
        self._subscribed = False
        self.last_error = ""
        # Other computers: "host:port" -> (their service, token, certificate fingerprint).
        self.remote_services: dict[str, tuple[FakeService, str, str]] = {}
        self.remote: tuple[str, int] | None = None
        self.fingerprint = self.seen_fingerprint = ""
        self._token = ""
        self._local_service = self.service
        self.connecting = False   # as the real client: from point_at_* until the first attempt ends

    @property
    def is_connected(self) -> bool:
        return self._is_connected

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    @property
    def target(self) -> str:
        return self.location if self.remote else str(self.data_dir)

    # -- pointing elsewhere (the real client's point_at_local / point_at_remote / trust) ---------
    def _repoint(self, remote: tuple[str, int] | None, location: str) -> None:
        """The old connection ends on purpose: ``disconnected`` once more, with ``connecting`` set and
        the new target named (as the real client)."""
        self.connecting = True
        self._is_connected = False
        self.remote, self.location = remote, location
        self.disconnected.emit()

    def point_at_local(self, data_dir: str | Path) -> None:
        self.service = self._local_service
        self.data_dir = Path(data_dir)
        self._repoint(None, str(self.data_dir / "admin.sock"))
        self.start()

    def point_at_remote(self, host: str, port: int, token: str, fingerprint: str = "") -> None:
        self._token, self.fingerprint, self.seen_fingerprint = token, fingerprint, ""
        self._repoint((host, int(port)), f"{host}:{int(port)}")
        self.start()

    def trust(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.start()

    def start(self) -> None:
        QTimer.singleShot(0, self, self._try_connect)

    def stop(self) -> None:
        was_up_or_trying = self._is_connected or self.connecting
        self._is_connected = self.connecting = False
        if was_up_or_trying:
            self.disconnected.emit()

    def retry_now(self) -> None:
        self._try_connect()

    def _try_connect(self) -> None:
        if self._is_connected:
            return
        if not self._reachable and self.remote is None:   # go_offline: this computer's service is away
            self.connecting = False
            self.disconnected.emit()
            return
        if self.remote is not None:
            entry = self.remote_services.get(self.location)
            if entry is None:
                self.last_error = socket_error_text(QAbstractSocket.SocketError.ConnectionRefusedError)
                self.connecting = False
                self.disconnected.emit()
                return
            service, token, fingerprint = entry
            self.seen_fingerprint = fingerprint
            if fingerprint != self.fingerprint:
                self.last_error = "the server's certificate is not trusted"
                # ``connecting`` stays while the question is open (``trust`` or ``stop`` answers it).
                self.certificate_unknown.emit(fingerprint, "The certificate is self-signed, and untrusted")
                return
            if token != self._token:
                refused = "The token is not valid (revoked, mistyped, or made for another server)."
                self.last_error = f"the token was refused: {refused}"
                self.connecting = False
                self.disconnected.emit()
                self.auth_failed.emit(refused)
                return
            self.service = service
        self.connecting = False
        self._is_connected = True
        self._subscribed = True
        self.connected.emit()

    # -- simulate the service going away and coming back ----------------------------------------
    def go_offline(self) -> None:
        self._reachable = False
        if self._is_connected:
            self._is_connected = False
            self._subscribed = False
            self.disconnected.emit()

    def go_online(self) -> None:
        """The service is back; the real client's retry timer would find it within seconds."""
        self._reachable = True
        QTimer.singleShot(10, self, self._try_connect)

    # -- the interface ---------------------------------------------------------------------------
    def request(self, op: str, params: dict[str, Any] | None = None,
                on_ok: OnOk | None = None, on_err: OnErr | None = None) -> None:
        params = dict(params or {})
        self.requests.append((op, params))
        if not self._is_connected:
            err = Unavailable(f"The POP3 Service is not reachable at {self.location}.")
            if on_err is not None:
                QTimer.singleShot(0, self, lambda: on_err(err))
            return
        try:
            result, events = self.service.call(op, params)
        except MailError as exc:
            error, result, events = exc, None, []
        else:
            error = None

        def deliver() -> None:
            if not self._is_connected:
                if on_err is not None:
                    on_err(Unavailable("The POP3 Service closed the admin connection."))
                return
            self._publish(events)
            if error is not None:
                if on_err is not None:
                    on_err(error)
            elif on_ok is not None:
                on_ok(result)

        QTimer.singleShot(self.latency_ms, self, deliver)

    def _publish(self, events: list[tuple[str, Any]]) -> None:
        if self._subscribed:
            for name, data in events:
                self.event_received.emit(name, data)

    def external(self, op: str, params: dict[str, Any] | None = None) -> Any:
        """Another admin (winpop, a second console) runs ``op``: only the events reach us."""
        result, events = self.service.call(op, dict(params or {}))
        QTimer.singleShot(0, self, lambda: self._publish(events))
        return result

    def external_delivery(self, address: str, size: int) -> None:
        events = self.service.deliver(address, size)
        QTimer.singleShot(0, self, lambda: self._publish(events))

    def ops_sent(self, name: str) -> list[dict[str, Any]]:
        return [p for op, p in self.requests if op == name]


def demo_service() -> FakeService:
    """A small, realistic data set for widget tests and manual runs."""
    svc = FakeService(hostname="mail.contoso.com")
    svc.seed({
        "contoso.com": ["administrator", "alice", "bob", "helpdesk", "info", "sales", "webmaster"],
        "fabrikam.com": ["jane", "john", "orders"],
        "northwind.local": ["nancy", "andrew", "janet", "margaret", "steven"],
        "lab.contoso.com": ["build", "test"],
    }, locked=("northwind.local", "sales@contoso.com"))
    svc.domains["contoso.com"].mailboxes["helpdesk"].quota_bytes = 50 * 1024 * 1024
    svc.settings["createuser"] = True
    svc.settings["admin_tcp_port"] = 9110
    svc.audit = [
        {"at": "2026-03-02T09:14:02", "actor": "root", "op": "mailbox.add", "target": "bob@contoso.com",
         "detail": "", "outcome": "ok"},
        {"at": "2026-03-02T09:12:40", "actor": "root", "op": "domain.lock", "target": "northwind.local",
         "detail": "", "outcome": "ok"},
        {"at": "2026-03-02T09:03:11", "actor": "root", "op": "settings.set", "target": "sparequired",
         "detail": "value=1", "outcome": "ok"},
    ]
    svc.counters.update({"pop3.sessions": 3, "pop3.logons": 1190, "pop3.logon_failures": 7,
                         "pop3.messages_retrieved": 1190, "smtp_accepted": 1284, "smtp_queued": 2})
    svc.history = demo_history()
    svc.log = [
        {"at": "2026-03-02T09:14:05+00:00", "level": "INFO", "source": "service.pop3.session",
         "message": "bob@contoso.com logged on from 192.168.1.23 (APOP), 3 messages"},
        {"at": "2026-03-02T09:14:02+00:00", "level": "INFO", "source": "service.ipc.server",
         "message": "admin mailbox.add bob@contoso.com by root (pid 4121)"},
        {"at": "2026-03-02T09:13:40+00:00", "level": "WARNING", "source": "service.throttle",
         "message": "banned address 203.0.113.77 for 900 s after 10 failed logons"},
        {"at": "2026-03-02T09:12:40+00:00", "level": "INFO", "source": "service.ipc.server",
         "message": "admin domain.lock northwind.local by root (pid 4121)"},
        {"at": "2026-03-02T09:03:11+00:00", "level": "INFO", "source": "service.smtp.queue",
         "message": "delivered 1A2B3C4D to partner.example (250 2.0.0 Ok)"},
    ]
    svc.bans = [
        {"kind": "address", "value": "203.0.113.77", "reason": "10 failed logons", "failures": 10,
         "created_at": "2026-03-02T09:13:40+00:00", "expires_at": "2026-03-02T09:28:40+00:00"},
        {"kind": "login", "value": "admin@contoso.com", "reason": "10 failed logons", "failures": 12,
         "created_at": "2026-03-02T08:55:02+00:00", "expires_at": "2026-03-02T09:10:02+00:00"},
    ]
    svc.queue = [
        {"id": 17, "queue_id": "5F3A9C21", "sender": "alice@contoso.com", "size": 48213, "submitted_by":
         "alice@contoso.com", "client": "192.168.1.40", "is_report": False, "created_at": "2026-03-02T08:40:00+00:00",
         "recipients": ["orders@partner.example"], "attempts": 3, "next_attempt": "2026-03-02T09:40:00+00:00",
         "last_error": "451 4.3.0 Mailbox temporarily unavailable",
         "recipient_states": [{"address": "orders@partner.example", "domain": "partner.example", "status": "pending",
                               "attempts": 3, "next_attempt": "2026-03-02T09:40:00+00:00",
                               "last_error": "451 4.3.0 Mailbox temporarily unavailable", "in_progress": False}],
         "headers": "From: Alice <alice@contoso.com>\r\nTo: orders@partner.example\r\nSubject: Order 4471",
         "body_preview": "Please find the order attached."},
        {"id": 18, "queue_id": "5F3A9C77", "sender": "<>", "size": 3120, "submitted_by": "", "client": "",
         "is_report": True, "created_at": "2026-03-02T09:01:00+00:00", "recipients": ["bounce@spam.example"],
         "attempts": 1, "next_attempt": "2026-03-02T09:16:00+00:00",
         "last_error": "connect to mx.spam.example: Connection timed out", "headers": "From: MAILER-DAEMON",
         "recipient_states": [{"address": "bounce@spam.example", "domain": "spam.example", "status": "pending",
                               "attempts": 1, "next_attempt": "2026-03-02T09:16:00+00:00",
                               "last_error": "connect to mx.spam.example: Connection timed out",
                               "in_progress": False}],
         "body_preview": ""},
    ]
    return svc


def demo_history(minutes: int = STATS_MAX_MINUTES, *,
                 down: tuple[int, int] = (STATS_MAX_MINUTES - 45, STATS_MAX_MINUTES - 37)
                 ) -> dict[str, list[int | None]]:
    """A plausible office day for the charts, ending at 14:00: quiet nights, busy office hours, and
    eight minutes in the last hour when the service was stopped (minutes ``down``: gaps)."""
    history: dict[str, list[int | None]] = {name: [] for name in STATS_SERIES}
    queue, disk = 2, 41_200
    for m in range(minutes):
        hour = (14 - (minutes - 1 - m) / 60) % 24                       # the last minute: 14:00
        day = max(0.0, math.sin(math.pi * (hour - 7) / 12)) if 7 <= hour <= 19 else 0.0   # office hours
        wobble = (m * 7919) % 13
        if down[0] <= m < down[1]:
            for values in history.values():
                values.append(None)
            continue
        received = round(day * day * 8 + (wobble % 5) * day)
        queue = max(0, queue + (1 if wobble == 3 else 0) - (1 if wobble == 8 and queue else 0))
        disk -= received // 3
        values_now = {"received": received, "delivered": int(received * 1.4),
                      "sent": round(day * 2 + (wobble % 3) * day),
                      "pop3_sessions": round(day * 12 + (wobble % 6) * day), "failed_logons": 3 if wobble == 11 else 0,
                      "queue_size": queue, "disk_free_mb": disk}
        for name, value in values_now.items():
            history[name].append(value)
    return history
