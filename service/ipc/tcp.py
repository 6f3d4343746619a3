"""The optional network admin listener: the admin channel over TCP with TLS and a token.

Off by default (``admin_tcp_port`` 0). When on, it serves exactly the op table of the Unix
socket, with the same ``AdminConnection`` request loop; only the gate differs:

- TLS 1.2 or newer with the service's certificate (service.tls), never plaintext;
- the first request must be ``auth.login`` with a token made by ``admin.token_create``
  (``winpop token create NAME``); the service keeps only its SHA-256;
- a wrong token is answered ``forbidden`` after the logon throttle's delay, counts as a failed
  logon of the remote address (enough of them ban it, like POP3 and SMTP AUTH), and the
  connection is closed;
- every connection is in the audit log with its remote address as the actor;
- the accepting is a ``service.listeners.Listener``: at most MAX_CONNECTIONS connections, and
  MAX_PER_ADDRESS per address (per /64 for IPv6); the handshake and the logon have short time
  limits, so a flood or a slow client cannot take the remote administration away.

The listener follows its two settings at run time (a ``settings.changed`` event restarts it).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from core.admin import Admin
from core.catalog import SETTINGS
from core.errors import Forbidden
from core.ipc import protocol
from core.tokens import AdminTokens
from service.counters import Counters
from service.event_bus import EventBus
from service.listeners import Limits, Listener
from service.live_settings import LiveSettings
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Runs

log = logging.getLogger(__name__)

DEFAULT_PORT = protocol.DEFAULT_TCP_PORT   # a suggestion for admin_tcp_port (and winpop --host's default)
LOGIN_TIMEOUT = 5.0          # seconds to send auth.login after the TLS handshake (however slowly it trickles)
HANDSHAKE_TIMEOUT = 10.0
MAX_CONNECTIONS = 32         # consoles and winpop calls from other computers, all together
MAX_PER_ADDRESS = 8


# The settings this listener follows: those whose change restarts it (core/catalog.py).
TCP_SETTINGS = tuple(name for name, spec in SETTINGS.items() if spec.restart == "admin_tcp")


# Serves one admitted TCP client: the admin channel's request loop (service.ipc.server).
ServeConnection = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "TokenGate"], Awaitable[None]]


class TokenGate:
    """Admits a TCP client that sends ``auth.login`` with a valid token first."""

    def __init__(self, writer: asyncio.StreamWriter, tokens: AdminTokens, *, throttle: LoginThrottle | None,
                 workers: Runs, counters: Counters, admin: Admin) -> None:
        self.tokens = tokens
        self.throttle = throttle
        self.workers = workers
        self.counters = counters
        self.admin = admin
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.address = str(peer[0])
        self.actor = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"

    async def admit(self, conn: Any) -> bool:
        throttle = self.throttle
        if throttle is not None and throttle.is_banned(self.address):
            await self._refuse(conn, None, "banned", "Too many failed logons from this address; try again later.")
            return False
        try:
            line = await asyncio.wait_for(conn.reader.readline(), LOGIN_TIMEOUT)
        except (TimeoutError, asyncio.LimitOverrunError, ValueError):
            await self._refuse(conn, None, "no login", "No auth.login within the time allowed.")
            return False
        if not line:
            await self._audit("refused: closed before logging in")
            return False
        req_id: Any = None
        token: Any = None
        try:
            msg = json.loads(line)
            req_id = msg.get("id") if isinstance(msg, dict) else None
            if isinstance(msg, dict) and msg.get("op") == "auth.login" and isinstance(msg.get("params"), dict):
                token = msg["params"].get("token")
        except (ValueError, UnicodeDecodeError):
            pass
        if not isinstance(token, str):
            await self._refuse(conn, req_id, "no login",
                               "Log in first: the first request on this port must be auth.login with a token.")
            return False
        name = await self.workers.run(self.tokens.verify, token, self.address)
        if name is None:
            if throttle is not None:
                await throttle.failure(self.address, None)
                await throttle.delay(self.address, None)
            self.counters.incr("admin_tcp.failures")
            await self._refuse(conn, req_id, "bad token",
                               "The token is not valid (revoked, mistyped, or made for another server).")
            return False
        self.actor = f"{self.actor} (token {name})"
        await self._audit("ok")
        log.info("admin channel: %s logged in over TCP", self.actor)
        conn.writer.write(protocol.response(req_id, {"actor": self.actor, "token": name}))
        return True

    async def _refuse(self, conn: Any, req_id: Any, why: str, message: str) -> None:
        log.warning("admin channel: refused %s over TCP (%s)", self.actor, why)
        await self._audit(f"forbidden: {why}")
        err = Forbidden(message)
        with contextlib.suppress(Exception):
            conn.writer.write(protocol.refusal(req_id, err))
            await conn.writer.drain()

    async def _audit(self, outcome: str) -> None:
        await self.workers.run(self.admin.audit, self.actor, "connect", "tcp", "", outcome)


class AdminTcpListener:
    """Starts, stops and re-binds the TCP admin listener as its settings say. The admin server
    starts it with the function that serves an admitted client."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, settings: LiveSettings, workers: Runs, tls: TlsMaterial,
                 events: EventBus, tokens: AdminTokens, throttle: LoginThrottle | None, counters: Counters,
                 admin: Admin) -> None:
        self.loop = loop
        self.settings = settings
        self.workers = workers
        self.tls = tls
        self.events = events
        self.tokens = tokens
        self.throttle = throttle
        self.counters = counters
        self.admin = admin
        self._serve: ServeConnection | None = None
        self._listener: Listener | None = None
        self.state = "off"
        self.error = ""
        self.bound: tuple[str, int] | None = None
        self._lock = asyncio.Lock()
        self._unsubscribe: Callable[[], None] | None = None

    def describe(self) -> dict[str, Any]:
        host, port = self.bound or (self.settings.get("admin_tcp_bind"), int(self.settings.get("admin_tcp_port")))
        return {"state": self.state, "address": host, "port": port, "error": self.error}

    async def start(self, serve: ServeConnection) -> None:
        """Listen as the settings say, serving admitted clients with ``serve``, and follow the
        settings from now on."""
        self._serve = serve
        if self._unsubscribe is None:
            self._unsubscribe = self.events.subscribe(self._on_event)
        async with self._lock:
            await self._start()

    async def _start(self) -> None:
        port = int(self.settings.get("admin_tcp_port"))
        host = str(self.settings.get("admin_tcp_bind"))
        self.error = ""
        if port == 0 or self._serve is None:
            self.state = "off"
            return
        serve = self._serve
        if not self.tls.available:
            self.state, self.error = "stopped", "TLS is not available, and remote administration never runs without it"
            log.error("the remote administration listener is off: %s", self.error)
            return
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            gate = TokenGate(writer, self.tokens, throttle=self.throttle, workers=self.workers,
                             counters=self.counters, admin=self.admin)
            await serve(reader, writer, gate)

        loop = asyncio.get_running_loop()

        def stream_protocol() -> asyncio.BaseProtocol:   # what asyncio.start_server makes per connection
            reader = asyncio.StreamReader(limit=protocol.MAX_LINE + 1, loop=loop)
            return asyncio.StreamReaderProtocol(reader, on_connect, loop=loop)

        listener = Listener("admin_tcp", "admin", host, port, stream_protocol, refusal=lambda _reason: b"",
                            ssl_context=self.tls.context, limits=lambda: Limits(MAX_CONNECTIONS, MAX_PER_ADDRESS),
                            handshake_timeout=HANDSHAKE_TIMEOUT)
        try:
            await listener.start()
        except OSError as exc:
            self.state, self.error = "stopped", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
            log.error("remote administration: %s", self.error)
            return
        self._listener = listener
        self.bound = (host, int(listener.bound_port or port))
        self.state = "running"
        log.warning("remote administration listens on %s:%d (TLS, token required)", *self.bound)

    async def stop(self) -> None:
        async with self._lock:
            await self._stop()

    async def _stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.stop()
            self._listener = None
        self.bound = None
        self.state = "off"

    async def restart(self) -> None:
        async with self._lock:
            await self._stop()
            await self._start()

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, name: str, data: Any) -> None:
        if name == "settings.changed" and isinstance(data, dict) and data.get("name") in TCP_SETTINGS:
            self.loop.create_task(self._follow_settings())

    async def _follow_settings(self) -> None:
        # The event can arrive before the settings cache is refreshed: read afresh.
        await self.workers.run(self.settings.reload)
        await self.restart()
