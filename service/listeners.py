"""Listeners with the states Running / Paused / Stopped, connection limits and session tracking.

The listener accepts connections itself and hands each to the protocol's factory with
``loop.connect_accepted_socket``, so it can refuse politely when paused or over a limit, set
TCP_NODELAY on every socket, and count sessions. POP3 and SMTP plug in a factory and a refusal.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class ListenerState(str, enum.Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class Refusal(str, enum.Enum):
    """Why a new connection is refused; the protocol turns it into its own reply."""

    PAUSED = "paused"
    BUSY = "busy"            # over the total connection limit
    BUSY_ADDRESS = "busy_address"  # over the per-address limit
    BANNED = "banned"


@dataclass(frozen=True)
class Limits:
    total: int
    per_address: int


class Listener:
    """One listening socket for one protocol (pop3, pop3s, smtp, submission, smtps)."""

    def __init__(
        self,
        name: str,
        kind: str,
        host: str,
        port: int,
        factory: Callable[[], asyncio.BaseProtocol],
        *,
        refusal: Callable[[Refusal], bytes],
        ssl_context: Callable[[], ssl.SSLContext | None] | None = None,
        limits: Callable[[], Limits] = lambda: Limits(500, 20),
        is_banned: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.host = host
        self.port = port
        self.factory = factory
        self.refusal = refusal
        self.ssl_context = ssl_context
        self.limits = limits
        self.is_banned = is_banned
        self.state = ListenerState.STOPPED
        self.error: str | None = None
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._per_address: dict[str, int] = {}
        self._pending: set[asyncio.Task] = set()
        self.total_sessions = 0

    @property
    def tls(self) -> bool:
        return self.ssl_context is not None

    @property
    def bound_port(self) -> int | None:
        return self._sock.getsockname()[1] if self._sock is not None else None

    @property
    def sessions(self) -> int:
        return len(self._transports)

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "state": self.state.value, "address": self.host,
                "port": self.bound_port if self._sock else self.port, "tls": self.tls,
                "sessions": self.sessions, "error": self.error}

    def bind(self) -> None:
        """Bind and listen (while privileged, before serving)."""
        if self._sock is not None:
            return
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            self.error = f"cannot listen on {self.host}:{self.port}: {exc.strerror}"
            raise
        self._sock = sock
        self.error = None

    async def start(self) -> None:
        """Bind if needed and accept connections (Stopped or Paused → Running)."""
        if self.state == ListenerState.RUNNING:
            return
        self.bind()
        if self._accept_task is None:
            self._accept_task = asyncio.get_running_loop().create_task(self._accept_loop(), name=f"accept-{self.name}")
        self.state = ListenerState.RUNNING
        log.info("listener %s running on %s:%s", self.name, self.host, self.bound_port)

    def pause(self) -> None:
        """Keep sessions, refuse new connections politely."""
        if self.state == ListenerState.RUNNING:
            self.state = ListenerState.PAUSED
            log.info("listener %s paused", self.name)

    def resume(self) -> None:
        if self.state == ListenerState.PAUSED:
            self.state = ListenerState.RUNNING
            log.info("listener %s resumed", self.name)

    async def stop(self) -> None:
        """Close the listening socket and end every session."""
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._accept_task
            self._accept_task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._pending):
            task.cancel()
        for transport in list(self._transports):
            transport.close()
        for _ in range(100):  # bounded: let connection_lost callbacks run
            if not self._transports:
                break
            await asyncio.sleep(0.01)
        for transport in list(self._transports):
            with contextlib.suppress(Exception):
                transport.abort()
        if self.state != ListenerState.STOPPED:
            log.info("listener %s stopped", self.name)
        self.state = ListenerState.STOPPED

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            try:
                conn, addr = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:  # EMFILE and friends: back off briefly, keep serving
                log.error("listener %s: accept failed: %s", self.name, exc)
                await asyncio.sleep(0.1)
                continue
            self._admit(conn, addr[0])

    def _admit(self, conn: socket.socket, address: str) -> None:
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reason = None
        limits = self.limits()
        if self.state == ListenerState.PAUSED:
            reason = Refusal.PAUSED
        elif self.is_banned is not None and self.is_banned(address):
            reason = Refusal.BANNED
        elif len(self._transports) + len(self._pending) >= limits.total:
            reason = Refusal.BUSY
        elif self._per_address.get(address, 0) >= limits.per_address:
            reason = Refusal.BUSY_ADDRESS
        if reason is not None:
            log.info("listener %s refused %s: %s", self.name, address, reason.value)
            if self.ssl_context is None:  # a plaintext reply cannot go into a TLS port
                with contextlib.suppress(OSError):
                    conn.send(self.refusal(reason))
            conn.close()
            return
        self._per_address[address] = self._per_address.get(address, 0) + 1
        task = asyncio.get_running_loop().create_task(self._serve(conn, address))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket, address: str) -> None:
        loop = asyncio.get_running_loop()
        protocol = self.factory()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                left = self._per_address.get(address, 1) - 1
                if left > 0:
                    self._per_address[address] = left
                else:
                    self._per_address.pop(address, None)

        original_lost = protocol.connection_lost
        transport_box: list[asyncio.BaseTransport] = []

        def connection_lost(exc: Exception | None) -> None:
            try:
                original_lost(exc)
            finally:
                for transport in transport_box:
                    self._transports.discard(transport)
                release()

        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        context = self.ssl_context() if self.ssl_context is not None else None
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=context, ssl_handshake_timeout=30 if context else None)
        except asyncio.CancelledError:
            conn.close()
            release()
            raise
        except Exception as exc:  # a failed TLS handshake: the client's problem, not ours
            log.info("listener %s: connection from %s failed: %s", self.name, address, exc)
            conn.close()
            release()
            return
        if transport.is_closing() and released:
            return
        transport_box.append(transport)
        self._transports.add(transport)
        self.total_sessions += 1
