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
from core.ipc.ops import OPS, check_implemented
from core.ipc.wire import to_wire
from core.settings import Settings
from core.tables import Domain
from service.ipc.scope import AdminScope, current_actor, current_requester
from service.logbook import recent
from service.tls import certificate_info, generate_self_signed, write_pair

ServiceContext = AdminScope   # what every handler receives (service/ipc/scope.py)
Handler = Callable[[ServiceContext, dict[str, Any]], Awaitable[Any]]


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
    async def run(ctx: ServiceContext, params: dict[str, Any]) -> Any:
        return to_wire(await ctx.run(getattr(ctx.admin, method), **params))
    return run


for _op, _method in {
    "settings.get": "settings_get",
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
async def import_windows(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    """Read the import tree only as far as the requesting administrator could (no links followed)."""
    return to_wire(await ctx.run(ctx.admin.import_windows, params["path"], requester=_requester()))


# Settings naming a file the service reads: the requester must be able to read it themselves.
_PATH_SETTINGS = ("tls_cert", "tls_key", "ldap_ca_file")


@handles("settings.set")
async def settings_set(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    value = params.get("value")
    if resolve(str(params.get("name", ""))).name in _PATH_SETTINGS and isinstance(value, str) and value.strip():
        await ctx.run(read_file_as, os.path.abspath(os.path.expanduser(value.strip())), _requester())
    result = await ctx.run(ctx.admin.settings_set, **params)
    await ctx.run(ctx.reload_settings)
    # A new method rebuilds the auth provider (key files, /etc/pam.d), TLS re-reads its files:
    # off the event loop.
    await ctx.run(ctx.apply_settings)
    return to_wire(result)


@handles("settings.describe")
async def settings_describe(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"items": [spec.describe() for spec in SETTINGS.values()]}


@handles("log.recent")
async def log_recent(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"level": ctx.setting("logging"), "items": recent(max(1, min(int(params.get("limit") or 100), 1000)))}


def service_status(ctx: ServiceContext) -> dict[str, Any]:
    return ctx.status.report()


@handles("service.status")
async def status(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return service_status(ctx)


def _fingerprint(cert_path: Any) -> str:
    """SHA-256 of the certificate, as the console and winpop --fingerprint show and pin it."""
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    return certificate_fingerprint(cert.public_bytes(Encoding.DER))


@handles("server.info")
async def server_info(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    def read_certificate() -> dict[str, Any]:   # a file read: off the event loop
        if not ctx.tls.available:
            return {}
        try:
            found = certificate_info(ctx.tls.cert_path)
            found["path"] = str(ctx.tls.cert_path)
            found["fingerprint"] = _fingerprint(ctx.tls.cert_path)
            return found
        except Exception as exc:  # an unreadable certificate is reported, not fatal
            return {"error": str(exc)}

    tls = await ctx.run(read_certificate)

    admin_tcp = ctx.admin_tcp.describe()

    def count_domains() -> int:
        with ctx.db.read() as session:
            return session.query(Domain).count()

    return {"hostname": ctx.hostname, "version": ctx.version, "auth": ctx.setting("auth"),
            "keystore": ctx.setting("keystore"), "key_problem": ctx.auth_methods.key_problem,
            "data_dir": str(ctx.data_dir),
            "mailroot": str(ctx.store.root), "domains": await ctx.run(count_domains),
            "tls": tls, "admin_tcp": admin_tcp, **service_status(ctx)}


@handles("mailbox.migrate")
async def mailbox_migrate(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    """winpop migrate: a password-file mailbox to a directory entry (core/auth/migration.py)."""
    methods = ctx.auth_methods
    directory = methods.directory()
    try:
        result = await ctx.run(migrate_to_directory, ctx.db, methods.key, directory, params["address"])
    finally:
        directory.close()
    ctx.events.publish("mailbox.changed", await ctx.run(ctx.admin.mailbox_get, result.address))
    if result.switched:
        await ctx.run(ctx.reload_settings)
        await ctx.run(ctx.apply_settings)
        ctx.events.publish("settings.changed", {"name": "auth", "value": "directory"})
    return to_wire(result)


@handles("service.control")
async def control(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    await ctx.control(params["action"], params.get("listener") or "")
    return service_status(ctx)


@handles("stat")
async def stat(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    result = to_wire(await ctx.run(ctx.admin.stat, params.get("domain")))
    result["counters"] = ctx.stats.snapshot()
    return result


async def _call(ctx: ServiceContext, method: Callable[..., Any], *args: Any) -> Any:
    """Call a component's method: awaited if it is a coroutine, else off the loop (it may block)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    return await ctx.run(method, *args)


@handles("ban.list")
async def ban_list(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    items = await _call(ctx, ctx.throttle.list_bans)
    return {"items": items}


@handles("ban.lift")
async def ban_lift(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"lifted": await _call(ctx, ctx.throttle.lift, params["value"])}


@handles("queue.list")
async def queue_list(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"items": await _call(ctx, ctx.smtp.queue_list)}


@handles("queue.show")
async def queue_show(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return await _call(ctx, ctx.smtp.queue_show, params["id"])


@handles("queue.retry")
async def queue_retry(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"retried": await _call(ctx, ctx.smtp.queue_retry, params.get("id"))}


@handles("queue.delete")
async def queue_delete(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"deleted": await _call(ctx, ctx.smtp.queue_delete, params["id"])}


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
async def relay_test(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    """Test this server only: a target host must be one of its own addresses and the port an SMTP
    port (25, 465, 587 or one of its listeners), so the test probes no other computer or service."""
    host, port = str(params.get("host") or ""), int(params.get("port") or 0)
    own_ports = {lst.bound_port for lst in ctx.listeners.values() if lst.kind == "smtp"}
    problem = ""
    if port and port not in (*RELAY_TEST_PORTS, *own_ports):
        problem = f"The relay test connects only to SMTP ports ({', '.join(map(str, RELAY_TEST_PORTS))} or this " \
                  f"service's SMTP listeners), not {port}."
    elif host and not await ctx.run(_is_local_address, host):
        problem = f"The relay test checks this server only; {host} is not one of its addresses."
    if problem:
        await ctx.run(ctx.admin.audit, current_actor.get(), "relay.test", host,
                      json.dumps({"host": host, "port": port}), "refused: forbidden")
        raise Forbidden(problem)
    return {"items": await _call(ctx, ctx.smtp.relay_test, host, port)}


@handles("auth.login")
async def auth_login(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    # A TCP connection's gate answers its first auth.login (service/ipc/tcp.py); here the client
    # is already admitted (Unix socket credentials, or a token earlier on this connection).
    return {"actor": current_actor.get(), "token": ""}


def _tokens(ctx: ServiceContext) -> Any:
    return ctx.tokens


@handles("admin.token_create")
async def token_create(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return await ctx.run(_tokens(ctx).create, params["name"], current_actor.get())


@handles("admin.token_list")
async def token_list(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"items": await ctx.run(_tokens(ctx).list)}


@handles("admin.token_revoke")
async def token_revoke(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    return {"revoked": await ctx.run(_tokens(ctx).revoke, params["name"])}


@handles("events.subscribe")
async def subscribe(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    # The connection object does the subscribing (see server.AdminConnection); this answers.
    return {"subscribed": True}


# -- process and TLS certificate (setup wizard, issue 6) ------------------------------------------
@handles("service.shutdown")
async def shutdown(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    request = ctx.request_shutdown
    restart = bool(params.get("restart"))
    # After this answer is on its way: the connection closes with the service.
    ctx.loop.call_later(0.05, request, restart)
    return {"stopping": True, "restart": restart}


def _install_certificate(ctx: ServiceContext, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
    """Check a pair, store it as DATA_DIR/tls/server.{crt,key} (key 0600), point the settings at
    it and load it into the running listeners (no restart)."""
    summary = check_pair(cert_pem, key_pem)
    cert_path, _key_path = write_pair(ctx.data_dir / "tls", cert_pem, key_pem)
    with ctx.db.write() as session:   # the default location: no path settings needed
        for name in ("tls_cert", "tls_key"):
            Settings.put(session, name, "")
    ctx.reload_settings()
    ctx.tls.configure("", "")
    ctx.tls.refresh()
    return {**summary.as_dict(), "path": str(cert_path)}


@handles("tls.generate")
async def tls_generate(ctx: ServiceContext, params: dict[str, Any]) -> Any:
    hostname = (params.get("hostname") or ctx.hostname).strip().rstrip(".").lower()
    if not re.fullmatch(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*", hostname) or len(hostname) > 253:
        raise Invalid(f"'{hostname}' is not a host name: use letters, digits and hyphens, with dots between "
                      "the parts (mail.example.com).")

    def make() -> dict[str, Any]:
        tls_dir = ctx.data_dir / "tls"
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tls_dir) as tmp:
            cert, key = Path(tmp) / "new.crt", Path(tmp) / "new.key"
            generate_self_signed(cert, key, hostname)
            return _install_certificate(ctx, cert.read_bytes(), key.read_bytes())

    result = await ctx.run(make)
    ctx.events.publish("settings.changed", {"name": "tls_cert", "value": ""})
    return result


@handles("tls.import")
async def tls_import(ctx: ServiceContext, params: dict[str, Any]) -> Any:
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
        return _install_certificate(ctx, cert, key)

    result = await ctx.run(install)
    ctx.events.publish("settings.changed", {"name": "tls_cert", "value": ""})
    return result
