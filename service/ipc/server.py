"""The admin channel's server: JSON lines over a Unix socket, peer-credential check, the op table,
the audit log and pushed change events (DESIGN §3)."""
from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import pwd
import socket
import ssl
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.access import Requester
from core.errors import Forbidden, Invalid, database_error
from core.ipc import protocol
from core.ipc.ops import OPS, check_params, redact
from service.ipc.handlers import HANDLERS
from service.ipc.scope import REMOTE, AdminScope, current_actor, current_requester
from service.ipc.tcp import TokenGate

log = logging.getLogger(__name__)
MAX_BUFFER = 8 * 1024 * 1024  # a subscriber further behind than this is disconnected


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket (SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


def _groups_of(pid: int, gid: int) -> set[int]:
    groups = {gid}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                groups.update(int(g) for g in line.split()[1:])
    return groups


def is_admin(pid: int, uid: int, gid: int, admin_group: str) -> bool:
    """Root, the service's own user, or a member of the admin group may administer."""
    if uid in (0, os.geteuid()):
        return True
    if admin_group:
        with contextlib.suppress(KeyError):
            return grp.getgrnam(admin_group).gr_gid in _groups_of(pid, gid)
    return False


def _actor(pid: int, uid: int) -> str:
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid {uid}"
    return f"{name} (pid {pid})"


def _target(params: dict[str, Any]) -> str:
    for key in ("address", "name", "domain", "value", "path", "listener", "id"):
        if params.get(key) not in (None, ""):
            return str(params[key])
    return ""


class AdminServer:
    """Listens on ``admin.sock`` and serves the op table; starts and stops the TCP listener too
    (``scope.admin_tcp``, off unless admin_tcp_port is set)."""

    def __init__(self, scope: AdminScope, path: Path) -> None:
        self.scope = scope
        self.path = path
        self.tcp = scope.admin_tcp
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        HANDLERS.check_complete()   # the dispatch serves the whole op table, or the service does not start
        if self.path.exists() or self.path.is_symlink():
            if self._alive():
                raise RuntimeError(f"another service is already running on {self.path}")
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._on_connect, path=str(self.path),
                                                           limit=protocol.MAX_LINE + 1)
        finally:
            os.umask(old_umask)
        self.apply_group()
        await self.tcp.start(self._serve_tcp)

    def apply_group(self) -> None:
        """Socket 0600 in a 0700 data directory; with an admin group, socket 0660 and the
        directory 0710 (its members may reach the socket, not read the files)."""
        if self._server is None:   # not open yet (a settings change during start-up): start() applies it
            return
        group = self.scope.setting("admin_group")
        mode, dir_mode = 0o600, 0o700
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
                os.chown(self.path, -1, gid)
                os.chown(self.path.parent, -1, gid)
                mode, dir_mode = 0o660, 0o710
            except (KeyError, PermissionError) as exc:
                log.error("admin group %r cannot own %s: %s", group, self.path, exc)
        os.chmod(self.path, mode)
        if self.path.parent.stat().st_uid == os.geteuid():
            os.chmod(self.path.parent, dir_mode)

    def _alive(self) -> bool:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self.path))
            return True
        except OSError:
            return False
        finally:
            probe.close()

    async def stop(self) -> None:
        await self.tcp.stop()
        self.tcp.close()
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if _CARRIED_ON:   # changes already received finish (and are audited) before the stop
                await asyncio.wait(list(_CARRIED_ON), timeout=10)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(AdminConnection(self.scope, reader, writer, UnixPeerGate(self.scope, writer)))

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: TokenGate) -> None:
        await self._track(AdminConnection(self.scope, reader, writer, gate))

    async def _track(self, connection: AdminConnection) -> None:
        """Serve one connection; ``stop`` cancels those still open."""
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            await connection.serve()
        finally:
            if task is not None:
                self._connections.discard(task)


class UnixPeerGate:
    """Admits a Unix-socket client by its credentials (SO_PEERCRED): root, the service's user or
    a member of the admin group."""

    def __init__(self, scope: AdminScope, writer: asyncio.StreamWriter) -> None:
        self.scope = scope
        self.pid, self.uid, self.gid = peer_credentials(writer.get_extra_info("socket"))
        self.actor = _actor(self.pid, self.uid)
        # Whose rights a path named in a request is read with (core.access, issue 12 §2).
        self.requester = Requester(self.uid, frozenset(_groups_of(self.pid, self.gid)))

    async def admit(self, conn: AdminConnection) -> bool:
        if is_admin(self.pid, self.uid, self.gid, self.scope.setting("admin_group")):
            return True
        log.warning("admin channel: refused %s (not root, the service user or the admin group)", self.actor)
        await self.scope.pending_audit.write(self.actor, "connect", "", "", "forbidden")
        err = Forbidden("You may not administer this mail service: only root, the service's user and "
                        "members of its admin group may.")
        # Answer the first request (so the client sees why), then hang up.
        req_id = None
        with contextlib.suppress(Exception):
            line = await asyncio.wait_for(conn.reader.readline(), 5)
            req_id = json.loads(line).get("id")
        conn.writer.write(protocol.refusal(req_id, err))
        await conn.writer.drain()
        return False


# Changes received before their client hung up: carried out and audited all the same (issue 12 §2).
_CARRIED_ON: set[asyncio.Task] = set()


def _mutates(line: bytes) -> bool:
    """True if ``line`` asks for an op that changes state (a cheap look before the real parse)."""
    try:
        op = json.loads(line).get("op")
    except (ValueError, AttributeError, RecursionError):
        return False
    return isinstance(op, str) and op in OPS and OPS[op].mutates


class AdminConnection:
    """One client of the admin channel (a console, a winpop call). ``gate`` decides whether the
    client may administer and names it (``actor``) for the audit log: ``UnixPeerGate`` on the
    Unix socket, ``service.ipc.tcp.TokenGate`` on the TCP listener."""

    def __init__(self, scope: AdminScope, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 gate: UnixPeerGate | TokenGate) -> None:
        self.scope = scope
        self.reader = reader
        self.writer = writer
        self.gate = gate
        self._unsubscribe: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def actor(self) -> str:
        return self.gate.actor

    async def serve(self) -> None:
        try:
            if not await self.gate.admit(self):
                return
            while True:
                try:
                    line = await self.reader.readline()
                except (asyncio.LimitOverrunError, ValueError):
                    self.writer.write(protocol.error(None, "invalid", "The request is longer than 1 MiB."))
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                task = asyncio.get_running_loop().create_task(self._handle(line))
                if _mutates(line):
                    # Not cancelled when the client goes: the change and its audit entry happen
                    # together or not at all, whenever the client hangs up.
                    _CARRIED_ON.add(task)
                    task.add_done_callback(_CARRIED_ON.discard)
                else:
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except (TimeoutError, ConnectionError, asyncio.CancelledError, ssl.SSLError):
            pass
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                self.writer.close()

    def _send(self, data: bytes) -> None:
        if self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > MAX_BUFFER:
            log.warning("admin channel: %s is not reading its events; disconnecting", self.actor)
            transport.abort()
            return
        self.writer.write(data)

    def _on_event(self, name: str, data: Any) -> None:
        self._send(protocol.event(name, data))

    async def _handle(self, line: bytes) -> None:
        req_id: Any = None
        op = "?"
        params: dict[str, Any] = {}
        try:
            msg = protocol.decode(line)
            req_id = msg.get("id")
            requested = msg.get("op")
            if not isinstance(requested, str):
                raise Invalid("The request has no 'op' (the operation's name).")
            op = requested
            params = check_params(op, msg.get("params"))   # against the op table, before any handler
            if op == "events.subscribe" and self._unsubscribe is None:
                self._unsubscribe = self.scope.events.subscribe(self._on_event)
            current_actor.set(self.actor)
            current_requester.set(self.gate.requester if isinstance(self.gate, UnixPeerGate) else REMOTE)
            result = await HANDLERS[op](self.scope, params)
        except Exception as exc:
            # A full disk or a lock held too long is a refusal worded for a person, not a bug.
            refusal = database_error(exc)
            mutates = op in OPS and OPS[op].mutates
            if refusal is None:   # a bug: say so plainly, log the details
                log.exception("admin op %s failed", op)
                if mutates:   # it may have changed something: audited all the same
                    await self._audit(op, params, "failed: internal", type(exc).__name__)
                self._send(protocol.error(req_id, "internal", f"The service failed to do '{op}': {exc}. "
                                          "See the service log for details."))
                return
            # The audit entry is written before the answer, so whoever reads the audit log
            # after an answer finds it there.
            if mutates:
                await self._audit(op, params, f"refused: {refusal.code}", refusal.message)
            self._send(protocol.refusal(req_id, refusal))
            log.info("admin %s by %s refused: %s", op, self.actor, refusal.message)
            return
        if OPS[op].mutates:
            await self._audit(op, params, "ok", "")
            log.info("admin %s %s by %s", op, _target(params), self.actor)
        self._send(protocol.response(req_id, result))

    async def _audit(self, op: str, params: dict[str, Any], outcome: str, message: str) -> None:
        shown = redact(op, params)
        if op == "settings.set" and str(params.get("name", "")).lower().endswith("password"):
            shown["value"] = "***"   # a secret setting (the service seals it; the audit log never sees it)
        detail = json.dumps({k: v for k, v in shown.items() if v not in (None, "")}, ensure_ascii=False)
        if message:
            detail = f"{detail} {message}"
        await self.scope.pending_audit.write(self.actor, op, _target(params), detail, outcome)
