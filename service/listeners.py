"""Listeners with the states Running / Paused / Stopped, connection limits and session tracking.

The listener accepts connections itself and hands each to the protocol's factory with
``loop.connect_accepted_socket``, so it can refuse politely when paused or over a limit, set
TCP_NODELAY on every socket, and count sessions. POP3 and SMTP plug in a factory and a refusal.

A connection's slot (its place in the listener's total and in its address's count) belongs to
the accepted socket, not to the protocol: the socket gives it back when it is closed, which
every way a connection ends does (a reset or failed handshake after STLS/STARTTLS, a handshake
timeout, an abort, an error in a command). Protocol callbacks cannot carry it: a TLS upgrade puts
an SSL protocol in front of the session, and that one does not pass a loss during the handshake
on. A sweep aborts connections that have been closing too long (a client that stopped reading).
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import ipaddress
import logging
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.lograte import EventLog
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)
events = EventLog(log)

HANDSHAKE_TIMEOUT = 30.0     # seconds for an implicit-TLS handshake (995, 465)
SWEEP_INTERVAL = 60.0        # a connection seen closing at two sweeps in a row is aborted
# Descriptors kept free of connections: the database pool and its files, messages being read or
# written, the admin channel, logs, and the process's own (measured on SQLite: 18 at rest, 121
# while holding 104 idle connections).
RESERVED_DESCRIPTORS = 192


class ListenerState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


class Refusal(enum.StrEnum):
    """Why a new connection is refused; the protocol turns it into its own reply."""

    PAUSED = "paused"
    BUSY = "busy"            # over the total connection limit
    BUSY_ADDRESS = "busy_address"  # over the per-address limit
    BANNED = "banned"


@dataclass(frozen=True)
class Limits:
    total: int
    per_address: int


def client_key(address: str) -> str:
    """The unit that connection limits and bans count: an IPv4 address itself, an IPv6 address's
    /64 (one subscriber gets at least a /64, RFC 6177 §2), an IPv4-mapped IPv6 address as IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


def connection_budget(open_files: int) -> int:
    """How many client connections all listeners together may hold under an open-file limit: what
    is left after RESERVED_DESCRIPTORS, halved (a POP3 session streaming a message holds a file too)."""
    return max(8, (open_files - RESERVED_DESCRIPTORS) // 2)


@dataclass
class ConnectionBudget:
    """All listeners' connections together stay below the open-file limit (see connection_budget)."""

    capacity: int
    listeners: list[Listener] = field(default_factory=list)

    def in_use(self) -> int:
        return sum(listener.sessions for listener in self.listeners)


class _SlotSocket(socket.socket):
    """An accepted socket that gives its listener slot back when it is closed, whoever closes it."""

    __slots__ = ("_release",)

    def __init__(self, *args: Any, release: Callable[[], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release = release

    def close(self) -> None:
        try:
            super().close()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _Slot:
    """One admitted connection: its address key, its transport once made, since when it closes."""

    __slots__ = ("key", "transport", "closing_seen")

    def __init__(self, key: str) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closing_seen = False


class _ReserveDescriptor:
    """One spare descriptor: when accept() fails with EMFILE it is let go, so the waiting clients
    can be accepted, told "busy" and closed instead of hanging in the backlog."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take()

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


_reserve: _ReserveDescriptor | None = None


class Listener:
    """One listening socket for one protocol (pop3, pop3s, smtp, submission, smtps, admin_tcp)."""

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
        budget: ConnectionBudget | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
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
        self.budget = budget
        if budget is not None:
            budget.listeners.append(self)
        self.handshake_timeout = handshake_timeout
        self.state = ListenerState.STOPPED
        self.error: str | None = None
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._slots: set[_Slot] = set()
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
        """Connections holding a slot: from accept() until their socket is closed."""
        return len(self._slots)

    def connections_from(self, address: str) -> int:
        """Connections counted against ``address``'s key (its /64 for IPv6)."""
        return self._per_address.get(client_key(address), 0)

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
        global _reserve
        if self.state == ListenerState.RUNNING:
            return
        self.bind()
        if _reserve is None:
            _reserve = _ReserveDescriptor()
        loop = asyncio.get_running_loop()
        if self._accept_task is None:
            self._accept_task = loop.create_task(self._accept_loop(), name=f"accept-{self.name}")
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep)
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
        """Close the listening socket, end every session, and start the accounting afresh."""
        await cancel_and_wait(self._accept_task)
        self._accept_task = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self._pending):
            task.cancel()
        for slot in list(self._slots):
            if slot.transport is not None:
                slot.transport.close()
        for _ in range(100):  # bounded: let connection_lost callbacks run
            if not self._slots:
                break
            await asyncio.sleep(0.01)
        for slot in list(self._slots):
            if slot.transport is not None:
                with contextlib.suppress(Exception):
                    slot.transport.abort()
        # Whatever is still open gives its slot back to an accounting that no longer exists.
        self._slots = set()
        self._per_address = {}
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
            except OSError as exc:  # EMFILE and friends: refuse the waiting clients, back off, keep serving
                events(f"{self.name} accept failed", logging.ERROR, "listener %s: accept failed: %s",
                       self.name, exc.strerror or exc)
                if exc.errno in (errno.EMFILE, errno.ENFILE):
                    self._shed()
                await asyncio.sleep(0.1)
                continue
            try:
                self._admit(conn, str(addr[0]))
            except Exception:  # noqa: BLE001 - one odd connection must not end the accept loop
                conn.close()
                events(f"{self.name} admit failed", logging.ERROR, "listener %s: admitting a connection failed",
                       self.name, exc_info=True)

    def _shed(self) -> None:
        """Out of descriptors: use the spare one to accept, refuse and close what waits in the backlog."""
        if _reserve is None or _reserve.fd is None or self._sock is None:
            return
        _reserve.release()
        try:
            for _ in range(128):
                try:
                    conn, _addr = self._sock.accept()
                except OSError:
                    break
                self._refuse(conn, Refusal.BUSY)
        finally:
            _reserve.take()

    def _refuse(self, conn: socket.socket, reason: Refusal) -> None:
        if self.ssl_context is None:  # a plaintext reply cannot go into a TLS port
            with contextlib.suppress(OSError):
                conn.setblocking(False)
                conn.send(self.refusal(reason))
        conn.close()

    def _admit(self, conn: socket.socket, address: str) -> None:
        conn.setblocking(False)
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = client_key(address)
        reason = None
        limits = self.limits()
        if self.state == ListenerState.PAUSED:
            reason = Refusal.PAUSED
        elif self.is_banned is not None and self.is_banned(address):
            reason = Refusal.BANNED
        elif len(self._slots) >= limits.total:
            reason = Refusal.BUSY
        elif self.budget is not None and self.budget.in_use() >= self.budget.capacity:
            reason = Refusal.BUSY
        elif self._per_address.get(key, 0) >= limits.per_address:
            reason = Refusal.BUSY_ADDRESS
        if reason is not None:
            events(f"{self.name} refused {reason.value}", logging.INFO, "listener %s refused %s: %s",
                   self.name, address, reason.value)
            self._refuse(conn, reason)
            return
        slot = _Slot(key)
        sock = _SlotSocket(conn.family, conn.type, conn.proto, fileno=conn.detach(),
                           release=lambda: self._release(slot))
        sock.setblocking(False)
        self._slots.add(slot)
        self._per_address[key] = self._per_address.get(key, 0) + 1
        task = asyncio.get_running_loop().create_task(self._serve(sock, slot, address))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _release(self, slot: _Slot) -> None:
        """The slot's socket is closed: give back its place (once; not after a stop reset them)."""
        if slot not in self._slots:
            return
        self._slots.discard(slot)
        left = self._per_address.get(slot.key, 1) - 1
        if left > 0:
            self._per_address[slot.key] = left
        else:
            self._per_address.pop(slot.key, None)

    async def _serve(self, sock: socket.socket, slot: _Slot, address: str) -> None:
        loop = asyncio.get_running_loop()
        context = self.ssl_context() if self.ssl_context is not None else None
        try:
            transport, _ = await loop.connect_accepted_socket(
                self.factory, sock, ssl=context, ssl_handshake_timeout=self.handshake_timeout if context else None)
        except asyncio.CancelledError:
            sock.close()
            raise
        except Exception as exc:  # a failed TLS handshake: the client's problem, not ours
            sock.close()
            events(f"{self.name} handshake failed", logging.INFO, "listener %s: connection from %s failed: %s",
                   self.name, address, exc or type(exc).__name__)
            return
        if slot in self._slots:
            slot.transport = transport
        self.total_sessions += 1

    def _sweep(self) -> None:
        """Abort connections seen closing at two sweeps in a row: a client that stopped reading
        must not keep its slot (and descriptor) for ever while its transport waits to flush."""
        self._sweeper = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)
        for slot in list(self._slots):
            transport = slot.transport
            if transport is None or not transport.is_closing():
                continue
            if slot.closing_seen:
                with contextlib.suppress(Exception):
                    transport.abort()
            else:
                slot.closing_seen = True
