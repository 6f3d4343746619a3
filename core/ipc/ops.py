"""The admin channel's operations: the single contract between service, console and winpop.

Each op names its parameters (type, required, secret) and what it returns. The service
implements exactly these (a test checks both sides agree); the console and ``winpop`` send them.
Parameters marked ``secret`` never reach a log or the audit log.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.catalog import is_secret
from core.errors import Invalid


@dataclass(frozen=True)
class Param:
    """One parameter of an op."""

    type: type | tuple[type, ...]
    required: bool = True
    secret: bool = False
    default: Any = None


@dataclass(frozen=True)
class OpSpec:
    """One operation: its name, parameters, whether it changes state (audited), and its result."""

    name: str
    params: dict[str, Param] = field(default_factory=dict)
    mutates: bool = False
    returns: str = ""
    summary: str = ""


def _op(op_name: str, summary: str, returns: str = "", /, *, mutates: bool = False, **params: Param) -> OpSpec:
    return OpSpec(name=op_name, params=params, mutates=mutates, returns=returns, summary=summary)


_STR = str
_INT = int
_OPT_STR = Param(str, required=False)
_PAGE = dict(offset=Param(int, required=False, default=0), limit=Param(int, required=False, default=0),
             filter=Param(str, required=False, default=""),
             sort=Param(str, required=False, default="name"),        # name, count, messages, size, state
             descending=Param(bool, required=False, default=False))

OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        # -- server and service --------------------------------------------------------------
        _op("server.info", "Host name, version, auth method, key store, listener states",
            "{hostname, version, auth, keystore, key_problem ('' or what to do), data_dir, mailroot, "
            "listeners: [...]}"),
        _op("service.status", "State of every listener and the service counters",
            "{state, listeners: [{name, kind, state, address, port, tls, sessions}], counters: {...}, "
            "disk: [{what, path, free_bytes, total_bytes, state: ok|low|full}], "
            "store_problems: {total, items: [{path, problem}]}}"),
        _op("service.control", "Start, stop, pause or resume listeners (all, or one by name)",
            "service.status result", mutates=True,
            action=Param(str), listener=Param(str, required=False, default="")),
        _op("service.shutdown", "End the service process (restart: start it again with the same options, "
            "e.g. after a port change)", "{stopping: true, restart}", mutates=True,
            restart=Param(bool, required=False, default=False)),
        # -- TLS certificate -----------------------------------------------------------------
        _op("tls.generate", "Make a new self-signed certificate for the host name; reloaded without a restart",
            "{subject, names, not_after, days_left, expires_soon, self_signed, path}", mutates=True,
            hostname=Param(str, required=False, default="")),
        _op("tls.import", "Install a PEM certificate and its key (checked: matching, not expired); key kept 0600",
            "{subject, names, not_after, days_left, expires_soon, self_signed, path}", mutates=True,
            cert=Param(str, required=False, default=""), key=Param(str, required=False, default="", secret=True),
            cert_path=Param(str, required=False, default=""), key_path=Param(str, required=False, default="")),
        # -- settings ------------------------------------------------------------------------
        _op("settings.get", "All settings, or one by name", "{name: value, ...}", name=_OPT_STR),
        _op("settings.describe", "Every setting the service knows: label, default, help, restart need",
            "{items: [{name, label, default, help, restart, writable}]}"),
        _op("settings.set", "Change one setting", "{name, value, restart}", mutates=True,
            name=Param(str), value=Param((str, int, bool, type(None)))),
        # -- domains -------------------------------------------------------------------------
        _op("domain.list", "Domains with counters, sorted by name",
            "{total, items: [DomainInfo]}", **_PAGE),
        _op("domain.get", "One domain", "DomainInfo", name=Param(str)),
        _op("domain.add", "Create a domain", "DomainInfo", mutates=True, name=Param(str)),
        _op("domain.delete", "Delete a domain with all its mailboxes and mail", "{name}", mutates=True,
            name=Param(str), delete_users=Param(bool, required=False, default=False)),
        _op("domain.lock", "Lock a domain: no logons, mail still delivered", "DomainInfo", mutates=True,
            name=Param(str)),
        _op("domain.unlock", "Unlock a domain", "DomainInfo", mutates=True, name=Param(str)),
        # -- mailboxes -----------------------------------------------------------------------
        _op("mailbox.list", "Mailboxes of a domain with counters, sorted by name",
            "{total, items: [MailboxInfo]}", domain=Param(str), **_PAGE),
        _op("mailbox.get", "One mailbox", "MailboxInfo", address=Param(str)),
        _op("mailbox.add", "Create a mailbox (and its associated user)", "MailboxInfo", mutates=True,
            address=Param(str), password=Param(str, required=False, secret=True),
            create_user=Param(bool, required=False, default=None),
            quota=Param((str, int, type(None)), required=False, default=None)),
        _op("mailbox.delete", "Delete a mailbox and its mail", "{address}", mutates=True,
            address=Param(str), delete_user=Param(bool, required=False, default=False)),
        _op("mailbox.lock", "Lock a mailbox: no logon, mail still delivered", "MailboxInfo", mutates=True,
            address=Param(str)),
        _op("mailbox.unlock", "Unlock a mailbox", "MailboxInfo", mutates=True, address=Param(str)),
        _op("mailbox.set_password", "Change a mailbox's password", "{address}", mutates=True,
            address=Param(str), password=Param(str, secret=True)),
        _op("mailbox.set_quota", "Set or clear a mailbox's quota", "MailboxInfo", mutates=True,
            address=Param(str), quota=Param((str, int, type(None)), required=False, default=None)),
        # -- statistics, audit, import -------------------------------------------------------
        _op("stat", "Totals for the server, or per mailbox for one domain",
            "{domains, mailboxes, messages, bytes, items: [...], counters: {...}}",
            domain=_OPT_STR),
        _op("log.recent", "The newest lines of the service log (what the current logging level lets through)",
            "{level, items: [{at, level, source, message}]}", limit=Param(int, required=False, default=100)),
        _op("audit.list", "The newest audit entries", "{items: [{at, actor, op, target, detail, outcome}]}",
            limit=Param(int, required=False, default=50)),
        _op("mailbox.migrate", "Move a password-file mailbox to a directory entry (the original's migrateToAD)",
            "{address, entry, created, password_carried, remaining, switched}", mutates=True, address=Param(str)),
        _op("import.windows", "Import a Windows POP3 Service mail root (DIR/<domain>/P3_<name>.mbx/*.eml)",
            "{domains, mailboxes, messages, skipped, warnings: [...]}", mutates=True, path=Param(str)),
        # -- logon throttling (POP3 and SMTP AUTH) -------------------------------------------
        _op("ban.list", "Addresses and login names banned after failed logons",
            "{items: [{kind, value, reason, failures, created_at, expires_at}]}"),
        _op("ban.lift", "Lift the ban of an address or login name", "{lifted: n}", mutates=True,
            value=Param(str)),
        # -- outgoing mail queue and relay ---------------------------------------------------
        _op("queue.list", "Messages waiting for delivery to other servers", "{items: [...]}"),
        _op("queue.show", "One queued message: envelope, attempts, headers", "{...}", id=Param(int)),
        _op("queue.retry", "Retry one queued message now, or all", "{retried: n}", mutates=True,
            id=Param(int, required=False, default=None)),
        _op("queue.delete", "Delete a queued message (no bounce)", "{deleted: n}", mutates=True, id=Param(int)),
        _op("relay.test", "Open-relay self-test against this server's SMTP listener",
            "{items: [{trick, recipient, reply, relayed}]}",
            host=Param(str, required=False, default=""), port=Param(int, required=False, default=0)),
        # -- remote administration (the TCP admin listener, issue 5) ------------------------
        # On TCP (TLS, ``admin_tcp_port``) the first request must be ``auth.login`` with a token;
        # any other first request, or a wrong token, is answered ``forbidden`` and the connection
        # closed (failures count towards the logon throttle of the remote address). On the Unix
        # socket the peer's credentials already decided, and ``auth.login`` just says so.
        _op("auth.login", "Authenticate a network admin connection with a token (first request on TCP)",
            "{actor, token}", token=Param(str, secret=True)),
        _op("admin.token_create", "Make an admin token for the TCP listener; the token is returned only now",
            "{id, name, token, created_at, ...}", mutates=True, name=Param(str)),
        _op("admin.token_list", "Admin tokens (names and last use, never the tokens)",
            "{items: [{id, name, created_by, created_at, last_used_at, last_used_from}]}"),
        _op("admin.token_revoke", "Revoke an admin token by name or id", "{revoked: n}", mutates=True,
            name=Param(str)),
        # -- events --------------------------------------------------------------------------
        _op("events.subscribe", "Receive change events on this connection", "{subscribed: true}"),
    )
}

# Events the service pushes to subscribers after a committed change: {"event": NAME, "data": ...}
EVENTS = {
    "domain.added": "DomainInfo",
    "domain.changed": "DomainInfo (lock state or counters moved)",
    "domain.deleted": "{name}",
    "mailbox.added": "MailboxInfo",
    "mailbox.changed": "MailboxInfo (lock, password, quota or counters moved)",
    "mailbox.deleted": "{address, domain, name}",
    "settings.changed": "{name, value}",
    "service.state": "service.status result",
    "smtp.rate_limited": "{login, limit, window}: a user hit the sending limit (a compromised account?)",
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
        raise Invalid(f"'{op}' has no parameter {', '.join(sorted(unknown))}.")
    out: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = params.get(name)
        if value is None:
            types = param.type if isinstance(param.type, tuple) else (param.type,)
            if param.required and type(None) not in types:
                raise Invalid(f"'{op}' needs the parameter '{name}'.")
            out[name] = param.default if name not in params else None
            continue
        types = param.type if isinstance(param.type, tuple) else (param.type,)
        if isinstance(value, bool) and bool not in types:
            raise Invalid(f"The parameter '{name}' of '{op}' has the wrong type.")
        if not isinstance(value, types):
            raise Invalid(f"The parameter '{name}' of '{op}' has the wrong type.")
        out[name] = value
    return out


def redact(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every secret parameter replaced, for logs and the audit log."""
    spec = OPS.get(op)
    if spec is None:
        return {}
    shown = {k: ("***" if spec.params.get(k, Param(str)).secret else v) for k, v in params.items()}
    if op == "settings.set" and is_secret(str(params.get("name", ""))) and "value" in shown:
        shown["value"] = "***"   # a secret setting (core/catalog.py)
    return shown
