"""The admin channel's operations: the single contract between service, console and winpop.

``OPS`` is THE op table. Each entry names the op, its parameters (type, required, secret), the
shape of its result, who may send it, the change events it publishes and what it does. The
service's dispatch is built from it (``service/ipc/handlers.py`` registers one handler per entry
and refuses to start otherwise); the console's client and ``winpop`` send only ops of this table
with its parameters, and the test double in ``tests/fake_service.py`` implements it (tests check
all three against this table). Parameters marked ``secret`` never reach a log or the audit log.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from core.catalog import is_secret
from core.errors import Invalid


class Access(Enum):
    """Who may send an op: what the service enforces today (it has no read-only role)."""

    ADMIN = "admin"   # an admitted administrator: root, the service's user or the admin group on the
    #                   Unix socket (SO_PEERCRED); a connection that logged on with a token on TCP
    LOGON = "logon"   # also the first request on TCP, before admission: the TCP gate answers it


JsonTypes = tuple[type, ...]


@dataclass(frozen=True)
class Param:
    """One parameter of an op."""

    type: type | tuple[type, ...]
    required: bool = True
    secret: bool = False
    default: Any = None

    @property
    def types(self) -> JsonTypes:
        return self.type if isinstance(self.type, tuple) else (self.type,)


@dataclass(frozen=True)
class OpSpec:
    """One operation: its name, parameters, result, who may send it, whether it changes state
    (then it is audited and carried out even if the client hangs up), the events it publishes."""

    name: str
    params: dict[str, Param] = field(default_factory=dict)
    mutates: bool = False
    returns: str = ""
    summary: str = ""
    access: Access = Access.ADMIN
    publishes: tuple[str, ...] = ()


def _op(op_name: str, summary: str, returns: str = "", /, *, mutates: bool = False, access: Access = Access.ADMIN,
        publishes: tuple[str, ...] = (), **params: Param) -> OpSpec:
    return OpSpec(name=op_name, params=params, mutates=mutates, returns=returns, summary=summary, access=access,
                  publishes=publishes)


def check_implemented(implemented: Iterable[str], by: str) -> None:
    """Raise RuntimeError unless ``implemented`` names every op of the table, and nothing else,
    exactly once (the service's dispatch is checked this way when it starts)."""
    names = list(implemented)
    twice = sorted({name for name in names if names.count(name) > 1})
    missing = sorted(set(OPS) - set(names))
    unknown = sorted(set(names) - set(OPS))
    problems = [f"{what}: {', '.join(ops)}" for what, ops in
                (("no handler for", missing), ("not in the op table", unknown), ("more than one handler for", twice))
                if ops]
    if problems:
        raise RuntimeError(f"{by} and the op table (core/ipc/ops.py) disagree: {'; '.join(problems)}.")


_OPT_STR = Param(str, required=False)
_PAGE = {"offset": Param(int, required=False, default=0), "limit": Param(int, required=False, default=0),
         "filter": Param(str, required=False, default=""),
         "sort": Param(str, required=False, default="name"),        # name, count, messages, size, state
         "descending": Param(bool, required=False, default=False)}

_DOMAIN_INFO = "DomainInfo {name, display_name, locked, mailbox_count, message_count, total_bytes}"
_MAILBOX_INFO = ("MailboxInfo {name, domain, address, locked, domain_locked, message_count, total_bytes, "
                 "quota_bytes, has_user}")
_STATUS = ("{state, listeners: [{name, kind, state, address, port, tls, sessions, error}], counters: {name: n}, "
           "disk: [{what, path, free_bytes, total_bytes, state: ok|low|full}], "
           "store_problems: {total, items: [{path, problem}]}}")
_CERTIFICATE = "{subject, names, not_before, not_after, days_left, expires_soon, self_signed, path}"
_MAILBOX_EVENTS = ("mailbox.changed",)

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        # -- server and service --------------------------------------------------------------
        _op("server.info", "Host name, version, auth method, key store, certificate, listener states",
            "{hostname, version, auth, keystore, key_problem ('' or what to do), data_dir, mailroot, domains, "
            "tls: {..., fingerprint} or {error}, admin_tcp: {state, address, port, error}, **service.status}"),
        _op("service.status", "State of every listener and the service counters", _STATUS),
        _op("service.control", "Start, stop, pause, resume or restart listeners (all, or one by name)",
            "service.status result", mutates=True, publishes=("service.state",),
            action=Param(str), listener=Param(str, required=False, default="")),
        _op("service.shutdown", "End the service process (restart: start it again with the same options, "
            "e.g. after a port change)", "{stopping: true, restart}", mutates=True,
            restart=Param(bool, required=False, default=False)),
        # -- TLS certificate -----------------------------------------------------------------
        _op("tls.generate", "Make a new self-signed certificate for the host name; reloaded without a restart",
            _CERTIFICATE, mutates=True, publishes=("settings.changed",),
            hostname=Param(str, required=False, default="")),
        _op("tls.import", "Install a PEM certificate and its key (checked: matching, not expired); key kept 0600",
            _CERTIFICATE, mutates=True, publishes=("settings.changed",),
            cert=Param(str, required=False, default=""), key=Param(str, required=False, default="", secret=True),
            cert_path=Param(str, required=False, default=""), key_path=Param(str, required=False, default="")),
        # -- settings ------------------------------------------------------------------------
        _op("settings.get", "All settings, or one by name", "{name: value, ...}", name=_OPT_STR),
        _op("settings.describe", "Every setting the service knows: label, default, help, restart need",
            "{items: [{name, label, default, help, restart, writable}]}"),
        _op("settings.snapshot", "Every setting with its version, read at once (what a property sheet starts from)",
            "{values: {name: value, ...}, versions: {name: n, ...}} (0: never stored)"),
        # With expected_version (the version a property sheet read), a setting someone changed since
        # is refused ('conflict', naming who and the value now) and nothing changes; without it
        # (winpop set: an explicit command) the last writer wins.
        _op("settings.set", "Change one setting", "{name, value, restart, version}", mutates=True,
            publishes=("settings.changed",), name=Param(str), value=Param((str, int, bool, type(None))),
            expected_version=Param(int, required=False, default=None)),
        # -- domains -------------------------------------------------------------------------
        replace(_op("domain.list", "Domains with counters, one page in the order asked for",
                    f"{{total, offset, items: [{_DOMAIN_INFO}]}}"), params=_PAGE),
        _op("domain.get", "One domain", _DOMAIN_INFO, name=Param(str)),
        _op("domain.add", "Create a domain", _DOMAIN_INFO, mutates=True, publishes=("domain.added",),
            name=Param(str)),
        _op("domain.delete", "Delete a domain with all its mailboxes and mail", "{name}", mutates=True,
            publishes=("domain.deleted",), name=Param(str), delete_users=Param(bool, required=False, default=False)),
        _op("domain.lock", "Lock a domain: no logons, mail still delivered", _DOMAIN_INFO, mutates=True,
            publishes=("domain.changed",), name=Param(str)),
        _op("domain.unlock", "Unlock a domain", _DOMAIN_INFO, mutates=True, publishes=("domain.changed",),
            name=Param(str)),
        # -- mailboxes -----------------------------------------------------------------------
        replace(_op("mailbox.list", "Mailboxes of a domain with counters, one page in the order asked for",
                    f"{{total, offset, domain, items: [{_MAILBOX_INFO}]}}"), params={"domain": Param(str), **_PAGE}),
        _op("mailbox.get", "One mailbox", _MAILBOX_INFO, address=Param(str)),
        _op("mailbox.add", "Create a mailbox (and its associated user)", _MAILBOX_INFO, mutates=True,
            publishes=("mailbox.added", "domain.changed"),
            address=Param(str), password=Param(str, required=False, secret=True),
            create_user=Param(bool, required=False, default=None),
            quota=Param((str, int, type(None)), required=False, default=None)),
        _op("mailbox.delete", "Delete a mailbox and its mail", "{address}", mutates=True,
            publishes=("mailbox.deleted", "domain.changed"),
            address=Param(str), delete_user=Param(bool, required=False, default=False)),
        _op("mailbox.lock", "Lock a mailbox: no logon, mail still delivered", _MAILBOX_INFO, mutates=True,
            publishes=_MAILBOX_EVENTS, address=Param(str)),
        _op("mailbox.unlock", "Unlock a mailbox", _MAILBOX_INFO, mutates=True, publishes=_MAILBOX_EVENTS,
            address=Param(str)),
        _op("mailbox.set_password", "Change a mailbox's password", "{address}", mutates=True,
            publishes=_MAILBOX_EVENTS, address=Param(str), password=Param(str, secret=True)),
        # check_quota (a property sheet): refused ('conflict') unless the quota is still expected_quota
        # (null: none), i.e. nobody changed it since the sheet showed it.
        _op("mailbox.set_quota", "Set or clear a mailbox's quota", _MAILBOX_INFO, mutates=True,
            publishes=_MAILBOX_EVENTS,
            address=Param(str), quota=Param((str, int, type(None)), required=False, default=None),
            check_quota=Param(bool, required=False, default=False),
            expected_quota=Param((int, type(None)), required=False, default=None)),
        # -- statistics, audit, import -------------------------------------------------------
        _op("stat", "Totals for the server, or per mailbox for one domain",
            f"{{domains, mailboxes, messages, bytes, items: [{_DOMAIN_INFO}], counters}}; with a domain: "
            f"{{domain, mailboxes, messages, bytes, locked, items: [{_MAILBOX_INFO}], counters}}",
            domain=_OPT_STR),
        _op("stats.history", "The per-minute series of the last hour or day (the status page's charts, winpop "
            "stats): counts of received, delivered, sent, pop3_sessions, failed_logons; samples of queue_size, "
            "disk_free_mb; null where the service was not running",
            "{interval: 60, end: <epoch seconds at the end of the last full minute>, "
            "series: {name: [value or null, ... oldest first, one per minute]}}",
            minutes=Param(int, required=False, default=60)),
        _op("log.recent", "The newest lines of the service log (what the current logging level lets through)",
            "{level, items: [{at, level, source, message}]}", limit=Param(int, required=False, default=100)),
        _op("audit.list", "The newest audit entries", "{items: [{at, actor, op, target, detail, outcome}]}",
            limit=Param(int, required=False, default=50)),
        _op("mailbox.migrate", "Move a password-file mailbox to a directory entry (the original's migrateToAD)",
            "{address, entry, created, password_carried, remaining, switched}", mutates=True,
            publishes=("mailbox.changed", "settings.changed"), address=Param(str)),
        _op("import.windows", "Import a Windows POP3 Service mail root (DIR/<domain>/P3_<name>.mbx/*.eml)",
            "{domains, mailboxes, messages, skipped, warnings: [...]}", mutates=True,
            publishes=("domain.added", "mailbox.added", "mailbox.changed", "domain.changed"), path=Param(str)),
        # -- logon throttling (POP3 and SMTP AUTH) -------------------------------------------
        _op("ban.list", "Addresses and login names banned after failed logons",
            "{items: [{kind, value, reason, failures, created_at, expires_at}]}"),
        _op("ban.lift", "Lift the ban of an address or login name", "{lifted: n}", mutates=True,
            publishes=("ban.lifted",), value=Param(str)),
        # -- outgoing mail queue and relay ---------------------------------------------------
        _op("queue.list", "Messages waiting for delivery to other servers",
            "{items: [{id, queue_id, sender, size, submitted_by, client, is_report, created_at, recipients, "
            "attempts, next_attempt, last_error, recipient_states: [{address, domain, status, attempts, "
            "next_attempt, last_error, in_progress}]}]}"),
        _op("queue.show", "One queued message: envelope, attempts, headers",
            "a queue.list item + {headers, body_preview, body_truncated}", id=Param(int)),
        _op("queue.retry", "Retry one queued message now, or all", "{retried: n}", mutates=True,
            id=Param(int, required=False, default=None)),
        _op("queue.delete", "Delete a queued message (no bounce)", "{deleted: n}", mutates=True, id=Param(int)),
        _op("relay.test", "Open-relay self-test against this server's SMTP listener",
            "{items: [{test, trick, mail_from, rcpt_to, recipient, reply, verdict, relayed}]}",
            host=Param(str, required=False, default=""), port=Param(int, required=False, default=0)),
        # -- remote administration (the TCP admin listener, issue 5) ------------------------
        # On TCP (TLS, ``admin_tcp_port``) the first request must be ``auth.login`` with a token;
        # any other first request, or a wrong token, is answered ``forbidden`` and the connection
        # closed (failures count towards the logon throttle of the remote address). On the Unix
        # socket the peer's credentials already decided, and ``auth.login`` just says so.
        _op("auth.login", "Authenticate a network admin connection with a token (first request on TCP)",
            "{actor, token}", access=Access.LOGON, token=Param(str, secret=True)),
        _op("admin.token_create", "Make an admin token for the TCP listener; the token is returned only now",
            "{id, name, created_by, created_at, last_used_at, last_used_from, token}", mutates=True,
            name=Param(str)),
        _op("admin.token_list", "Admin tokens (names and last use, never the tokens)",
            "{items: [{id, name, created_by, created_at, last_used_at, last_used_from}]}"),
        _op("admin.token_revoke", "Revoke an admin token by name or id", "{revoked: n}", mutates=True,
            name=Param(str)),
        # -- events --------------------------------------------------------------------------
        _op("events.subscribe", "Receive change events on this connection", "{subscribed: true}"),
    )
}


@dataclass(frozen=True)
class StatsSeries:
    """One series of ``stats.history``: its label (console charts, winpop stats) and whether each
    value counts what happened in that minute or samples a level at its end."""

    name: str
    label: str
    counted: bool
    unit: str = ""


# The series of stats.history, in the order the console and winpop show them (service/history.py
# keeps exactly these).
STATS_SERIES: dict[str, StatsSeries] = {s.name: s for s in (
    StatsSeries("received", "Mail received", counted=True),
    StatsSeries("delivered", "Delivered locally", counted=True),
    StatsSeries("sent", "Sent out", counted=True),
    StatsSeries("pop3_sessions", "POP3 sessions", counted=True),
    StatsSeries("failed_logons", "Failed logons", counted=True),
    StatsSeries("queue_size", "Outgoing queue", counted=False),
    StatsSeries("disk_free_mb", "Free disk space", counted=False, unit="MB"),
)}
STATS_MAX_MINUTES = 1440   # stats.history goes back a day at most

# Events the service pushes to subscribers after a committed change: {"event": NAME, "data": ...}
EVENTS = {
    "domain.added": "DomainInfo",
    "domain.changed": "DomainInfo (lock state or counters moved)",
    "domain.deleted": "{name}",
    "mailbox.added": "MailboxInfo",
    "mailbox.changed": "MailboxInfo (lock, password, quota or counters moved)",
    "mailbox.deleted": "{address, domain, name}",
    "settings.changed": "{name, value, version}",
    "service.state": "service.status result",
    "smtp.rate_limited": "{login, limit, window}: a user hit the sending limit (a compromised account?)",
    "ban.added": "{kind, value, expires_at}: an address or login name was banned after failed logons",
    "ban.lifted": "{value}",
}


def check_params(op: str, params: Any) -> dict[str, Any]:
    """Validate ``params`` against the op table; fill defaults. Raises Invalid with a clear text."""
    spec = OPS.get(op)
    if spec is None:
        raise Invalid(f"Unknown operation '{op}'. Known operations: {', '.join(sorted(OPS))}.")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise Invalid(f"The parameters of '{op}' must be a JSON object.")
    unknown = set(params) - set(spec.params)
    if unknown:
        raise Invalid(f"'{op}' has no parameter {', '.join(sorted(unknown))}; "
                      f"it takes: {', '.join(spec.params) or 'none'}.")
    out: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = params.get(name)
        if value is None:
            if param.required and type(None) not in param.types:
                raise Invalid(f"'{op}' needs the parameter '{name}'.")
            out[name] = param.default if name not in params else None
            continue
        # JSON true/false are Python bools, and bool is an int: a flag is no number here.
        if (isinstance(value, bool) and bool not in param.types) or not isinstance(value, param.types):
            raise Invalid(f"The parameter '{name}' of '{op}' has the wrong type: it takes "
                          f"{_type_words(param.types)}, not {_type_words((type(value),))}.")
        out[name] = value
    return out


_TYPE_WORDS = {str: "text", int: "a whole number", bool: "true or false", type(None): "null", float: "a fraction",
               list: "a list", dict: "an object"}


def _type_words(types: JsonTypes) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types)


def redact(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every secret parameter replaced, for logs and the audit log."""
    spec = OPS.get(op)
    if spec is None:
        return {}
    shown = {k: ("***" if spec.params.get(k, Param(str)).secret else v) for k, v in params.items()}
    if op == "settings.set" and is_secret(str(params.get("name", ""))) and "value" in shown:
        shown["value"] = "***"   # a secret setting (core/catalog.py)
    return shown
