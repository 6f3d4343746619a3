"""The admin channel's op implementations: one coroutine per op of the op table (core.ipc.ops.OPS).

Each handler is registered against its table entry with ``@handles(name)``: a name the table does
not have, or a second handler for one op, fails at import; the admin server refuses to start
unless every op has its handler (``HANDLERS.check_complete()``). Parameters are checked against the
table before a handler runs (service/ipc/server.py), so a handler gets every parameter of its op,
defaults filled in.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import socket
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from core.access import read_file_as
from core.auth.migration import migrate_to_directory
from core.catalog import SETTINGS, SMTP_PORTS, resolve
from core.certificates import check_pair
from core.errors import Forbidden, Invalid
from core.ipc.client import certificate_fingerprint
from core.ipc.ops import OPS, STATS_MAX_MINUTES, check_implemented
from core.ipc.wire import to_wire
from core.settings import Settings
from core.tables import Domain
from service.ipc.scope import AdminScope, current_actor, current_requester
from service.logbook import recent
from service.tls import certificate_info, generate_self_signed, write_pair

Handler = Callable[[AdminScope, dict[str, Any]], Awaitable[Any]]


class HandlerTable(Mapping[str, Handler]):
    """The service's side of the op table: exactly one handler per op, nothing else."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> Handler:
        if name not in OPS:
            raise RuntimeError(f"A handler for '{name}', which is not in the op table (core/ipc/ops.py).")
        if name in self._handlers:
            raise RuntimeError(f"A second handler for '{name}'.")
        self._handlers[name] = handler
        return handler

    def check_complete(self) -> None:
        """Raise RuntimeError unless every op of the table has its handler."""
        check_implemented(self._handlers, "The admin channel's handlers")

    def __getitem__(self, name: str) -> Handler:
        return self._handlers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)


HANDLERS = HandlerTable()


def handles(name: str) -> Callable[[Handler], Handler]:
    """Register the decorated coroutine as the handler of op ``name`` (a name of the op table)."""
    def register(fn: Handler) -> Handler:
        return HANDLERS.register(name, fn)
    return register


def _admin(method: str) -> Handler:
    async def run(scope: AdminScope, params: dict[str, Any]) -> Any:
        return to_wire(await scope.run(getattr(scope.admin, method), **params))
    return run


for _op, _method in {
    "settings.get": "settings_get",
    "settings.snapshot": "settings_snapshot",
    "domain.list": "domain_list",
    "domain.get": "domain_get",
    "domain.add": "domain_add",
    "domain.delete": "domain_delete",
    "domain.lock": "domain_lock",
    "domain.unlock": "domain_unlock",
    "mailbox.list": "mailbox_list",
    "mailbox.get": "mailbox_get",
    "mailbox.add": "mailbox_add",
    "mailbox.delete": "mailbox_delete",
    "mailbox.lock": "mailbox_lock",
    "mailbox.unlock": "mailbox_unlock",
    "mailbox.set_password": "mailbox_set_password",
    "mailbox.set_quota": "mailbox_set_quota",
    "audit.list": "audit_list",
}.items():
    HANDLERS.register(_op, _admin(_method))


def _requester() -> Any:
    """Whose file permissions a path in the current request is read with (core.access)."""
    return current_requester.get()


@handles("import.windows")
async def import_windows(scope: AdminScope, params: dict[str, Any]) -> Any:
    """Read the import tree only as far as the requesting administrator could (no links followed)."""
    return to_wire(await scope.run(scope.admin.import_windows, params["path"], requester=_requester()))


# Settings naming a file the service reads: the requester must be able to read it themselves.
_PATH_SETTINGS = ("tls_cert", "tls_key", "ldap_ca_file")


@handles("settings.set")
async def settings_set(scope: AdminScope, params: dict[str, Any]) -> Any:
    value = params.get("value")
    if resolve(str(params.get("name", ""))).name in _PATH_SETTINGS and isinstance(value, str) and value.strip():
        await scope.run(read_file_as, os.path.abspath(os.path.expanduser(value.strip())), _requester())
    result = await scope.run(scope.admin.settings_set, **params)
    await scope.run(scope.reload_settings)
    # A new method rebuilds the auth provider (key files, /etc/pam.d), TLS re-reads its files:
    # off the event loop.
    await scope.run(scope.apply_settings)
    return to_wire(result)


@handles("settings.describe")
async def settings_describe(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"items": [spec.describe() for spec in SETTINGS.values()]}


@handles("log.recent")
async def log_recent(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"level": scope.setting("logging"), "items": recent(max(1, min(int(params.get("limit") or 100), 1000)))}


def service_status(scope: AdminScope) -> dict[str, Any]:
    return scope.status.report()


@handles("service.status")
async def status(scope: AdminScope, params: dict[str, Any]) -> Any:
    return service_status(scope)


def _fingerprint(cert_path: Any) -> str:
    """SHA-256 of the certificate, as the console and winpop --fingerprint show and pin it."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return certificate_fingerprint(cert.public_bytes(Encoding.DER))


@handles("server.info")
async def server_info(scope: AdminScope, params: dict[str, Any]) -> Any:
    def read_certificate() -> dict[str, Any]:   # a file read: off the event loop
        if not scope.tls.available:
            return {}
        try:
            found = certificate_info(scope.tls.cert_path)
            found["path"] = str(scope.tls.cert_path)
            found["fingerprint"] = _fingerprint(scope.tls.cert_path)
            return found
        except Exception as exc:  # an unreadable certificate is reported, not fatal
            return {"error": str(exc)}

    tls = await scope.run(read_certificate)

    admin_tcp = scope.admin_tcp.describe()

    def count_domains() -> int:
        with scope.db.read() as session:
            return session.query(Domain).count()

    return {"hostname": scope.hostname, "version": scope.version, "auth": scope.setting("auth"),
            "keystore": scope.setting("keystore"), "key_problem": scope.auth_methods.key_problem,
            "data_dir": str(scope.data_dir),
            "mailroot": str(scope.store.root), "domains": await scope.run(count_domains),
            "tls": tls, "admin_tcp": admin_tcp, **service_status(scope)}


def _version(scope: AdminScope, name: str) -> int:
    """A setting's version now, for the change event of an op that stored it on the way."""
    with scope.db.read() as session:
        return Settings.version(session, name)


@handles("mailbox.migrate")
async def mailbox_migrate(scope: AdminScope, params: dict[str, Any]) -> Any:
    """winpop migrate: a password-file mailbox to a directory entry (core/auth/migration.py)."""
    methods = scope.auth_methods
    directory = methods.directory()
    try:
        result = await scope.run(migrate_to_directory, scope.db, methods.key, directory, params["address"])
    finally:
        directory.close()
    scope.events.publish("mailbox.changed", await scope.run(scope.admin.mailbox_get, result.address))
    if result.switched:
        await scope.run(scope.reload_settings)
        await scope.run(scope.apply_settings)
        scope.events.publish("settings.changed", {"name": "auth", "value": "directory",
                                                  "version": await scope.run(_version, scope, "auth")})
    return to_wire(result)


@handles("service.control")
async def control(scope: AdminScope, params: dict[str, Any]) -> Any:
    await scope.control(params["action"], params.get("listener") or "")
    return service_status(scope)


@handles("stat")
async def stat(scope: AdminScope, params: dict[str, Any]) -> Any:
    result = to_wire(await scope.run(scope.admin.stat, params.get("domain")))
    result["counters"] = scope.stats.snapshot()
    return result


@handles("stats.history")
async def stats_history(scope: AdminScope, params: dict[str, Any]) -> Any:
    minutes = int(params.get("minutes") or 60)
    if not 1 <= minutes <= STATS_MAX_MINUTES:
        raise Invalid(f"The history goes back 1 to {STATS_MAX_MINUTES} minutes (a day), not {minutes}.")
    await scope.history.roll()   # the minute that just ended, even if the timer has not run yet
    return await scope.run(scope.history.series, minutes)


async def _call(scope: AdminScope, method: Callable[..., Any], *args: Any) -> Any:
    """Call a component's method: awaited if it is a coroutine, else off the loop (it may block)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    return await scope.run(method, *args)


@handles("ban.list")
async def ban_list(scope: AdminScope, params: dict[str, Any]) -> Any:
    items = await _call(scope, scope.throttle.list_bans)
    return {"items": items}


@handles("ban.lift")
async def ban_lift(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"lifted": await _call(scope, scope.throttle.lift, params["value"])}


@handles("queue.list")
async def queue_list(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"items": await _call(scope, scope.smtp.queue_list)}


@handles("queue.show")
async def queue_show(scope: AdminScope, params: dict[str, Any]) -> Any:
    return await _call(scope, scope.smtp.queue_show, params["id"])


@handles("queue.retry")
async def queue_retry(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"retried": await _call(scope, scope.smtp.queue_retry, params.get("id"))}


@handles("queue.delete")
async def queue_delete(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"deleted": await _call(scope, scope.smtp.queue_delete, params["id"])}


RELAY_TEST_PORTS = tuple(sorted(SMTP_PORTS))   # 25, 465, 587


def _is_local_address(host: str) -> bool:
    """True if every address ``host`` resolves to belongs to this computer (it can be bound here)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    for family, _type, _proto, _name, address in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))
        except OSError:
            return False
    return bool(infos)


@handles("relay.test")
async def relay_test(scope: AdminScope, params: dict[str, Any]) -> Any:
    """Test this server only: a target host must be one of its own addresses and the port an SMTP
    port (25, 465, 587 or one of its listeners), so the test probes no other computer or service."""
    host, port = str(params.get("host") or ""), int(params.get("port") or 0)
    own_ports = {lst.bound_port for lst in scope.listeners.values() if lst.kind == "smtp"}
    problem = ""
    if port and port not in (*RELAY_TEST_PORTS, *own_ports):
        problem = f"The relay test connects only to SMTP ports ({', '.join(map(str, RELAY_TEST_PORTS))} or this " \
                  f"service's SMTP listeners), not {port}."
    elif host and not await scope.run(_is_local_address, host):
        problem = f"The relay test checks this server only; {host} is not one of its addresses."
    if problem:
        await scope.run(scope.admin.audit, current_actor.get(), "relay.test", host,
                      json.dumps({"host": host, "port": port}), "refused: forbidden")
        raise Forbidden(problem)
    return {"items": await _call(scope, scope.smtp.relay_test, host, port)}


@handles("auth.login")
async def auth_login(scope: AdminScope, params: dict[str, Any]) -> Any:
    # A TCP connection's gate answers its first auth.login (service/ipc/tcp.py); here the client
    # is already admitted (Unix socket credentials, or a token earlier on this connection).
    return {"actor": current_actor.get(), "token": ""}


def _tokens(scope: AdminScope) -> Any:
    return scope.tokens


@handles("admin.token_create")
async def token_create(scope: AdminScope, params: dict[str, Any]) -> Any:
    return await scope.run(_tokens(scope).create, params["name"], current_actor.get())


@handles("admin.token_list")
async def token_list(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"items": await scope.run(_tokens(scope).list)}


@handles("admin.token_revoke")
async def token_revoke(scope: AdminScope, params: dict[str, Any]) -> Any:
    return {"revoked": await scope.run(_tokens(scope).revoke, params["name"])}


@handles("events.subscribe")
async def subscribe(scope: AdminScope, params: dict[str, Any]) -> Any:
    # The connection object does the subscribing (see server.AdminConnection); this answers.
    return {"subscribed": True}


# -- process and TLS certificate (setup wizard, issue 6) ------------------------------------------
@handles("service.shutdown")
async def shutdown(scope: AdminScope, params: dict[str, Any]) -> Any:
    request = scope.request_shutdown
    restart = bool(params.get("restart"))
    # After this answer is on its way: the connection closes with the service.
    scope.loop.call_later(0.05, request, restart)
    return {"stopping": True, "restart": restart}


def _install_certificate(scope: AdminScope, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """Check a pair, store it as DATA_DIR/tls/server.{crt,key} (key 0600), point the settings at
    it and load it into the running listeners (no restart)."""
    summary = check_pair(cert_pem, key_pem)
    cert_path, _key_path = write_pair(scope.data_dir / "tls", cert_pem, key_pem)
    with scope.db.write() as session:   # the default location: no path settings needed
        for name in ("tls_cert", "tls_key"):
            Settings.put(session, name, "")
    scope.reload_settings()
    scope.tls.configure("", "")
    scope.tls.refresh()
    return {**summary.as_dict(), "path": str(cert_path)}


async def _publish_certificate_paths(scope: AdminScope) -> None:
    """Both path settings point at the default location now: an open property sheet shows it."""
    for name in ("tls_cert", "tls_key"):
        scope.events.publish("settings.changed", {"name": name, "value": "",
                                                  "version": await scope.run(_version, scope, name)})


@handles("tls.generate")
async def tls_generate(scope: AdminScope, params: dict[str, Any]) -> Any:
    hostname = (params.get("hostname") or scope.hostname).strip().rstrip(".").lower()
    if not re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", hostname) or len(hostname) > 253:
        raise Invalid(f"'{hostname}' is not a host name: use letters, digits and hyphens, with dots between "
                      "the parts (mail.example.com).")

    def make() -> dict[str, Any]:
        tls_dir = scope.data_dir / "tls"
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tls_dir) as tmp:
            cert, key = Path(tmp) / "new.crt", Path(tmp) / "new.key"
            generate_self_signed(cert, key, hostname)
            return _install_certificate(scope, cert.read_bytes(), key.read_bytes())

    result = await scope.run(make)
    await _publish_certificate_paths(scope)
    return result


@handles("tls.import")
async def tls_import(scope: AdminScope, params: dict[str, Any]) -> Any:
    requester = _requester()

    def read(text: str, path: str, what: str) -> bytes:
        if text:
            return text.encode("utf-8")
        if not path:
            raise Invalid(f"Give the {what} as PEM text or as the path of a PEM file.")
        # Only a file the requesting administrator could read themselves (issue 12 §2).
        return read_file_as(os.path.abspath(Path(path).expanduser()), requester)

    def install() -> dict[str, Any]:
        cert = read(params.get("cert") or "", params.get("cert_path") or "", "certificate")
        key = read(params.get("key") or "", params.get("key_path") or "", "private key")
        return _install_certificate(scope, cert, key)

    result = await scope.run(install)
    await _publish_certificate_paths(scope)
    return result
