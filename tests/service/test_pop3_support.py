"""A POP3 service in a background thread for the POP3 tests: the real parts (settings, workers,
throttle, Pop3Server) over a temporary SQLite database and mail root, the password-file provider,
self-signed TLS, and the pop3 / pop3s Listeners on 127.0.0.1 port 0. Tests talk to it through real sockets."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.auth import PasswordFileProvider, ServerKey
from core.db import Database
from core.settings import Settings
from core.store import MailStore
from core.tables import Domain, Mailbox
from service.auth_methods import FixedAuth
from service.counters import Counters
from service.event_bus import EventBus
from service.listeners import Limits, Listener
from service.live_settings import LiveSettings
from service.pop3.lock import MailboxLocks
from service.pop3.server import Pop3Server
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers
from tests.support import db_url_for

PASSWORD = "s3cret pass"
DEFAULT_LIMITS = Limits(500, 100)


class Pop3Harness:
    """One service process's worth of POP3, running on its own event loop thread."""

    def __init__(self, data_dir: Path, *, settings: dict[str, Any] | None = None, db_url: str | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(db_url or db_url_for(data_dir / "service.db"))
        self.db.upgrade()
        defaults = {"sparequired": False, "throttle_delay_ms": 0, "hostname": "pop.test"}
        with self.db.write() as session:
            for name, value in {**defaults, **(settings or {})}.items():
                Settings.put(session, name, value)
        self.store = MailStore(self.db, data_dir / "mail", hostname="pop.test")
        self.store.check_root(create=True)
        self.key = ServerKey.generate()
        self.provider = PasswordFileProvider(self.db, self.key, mailroot=data_dir / "mail", scram_iterations=4096)
        self.limits = limits
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pop3-test-loop", daemon=True)
        self._thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        self.settings = LiveSettings.load(self.db, fallback_hostname="pop.test")
        self.workers = Workers(self.loop)
        self.counters = Counters()
        self.events = EventBus(self.loop)
        self.tls = TlsMaterial(self.data_dir, "localhost")
        self.throttle = LoginThrottle(self.db, self.settings, self.workers, self.counters, self.events)
        self.server = Pop3Server(loop=self.loop, store=self.store, auth=FixedAuth(self.provider), tls=self.tls,
                                 throttle=self.throttle,
                                 locks=MailboxLocks(self.db, lease_seconds=int(self.settings.get("pop3_lock_lease"))),
                                 settings=self.settings, counters=self.counters, workers=self.workers)
        self.pop3 = Listener("pop3", "pop3", "127.0.0.1", 0, self.server.protocol_factory(implicit_tls=False),
                             refusal=self.server.refusal, limits=lambda: self.limits,
                             is_banned=self.throttle.is_banned)
        self.pop3s = Listener("pop3s", "pop3", "127.0.0.1", 0, self.server.protocol_factory(implicit_tls=True),
                              refusal=self.server.refusal, ssl_context=self.tls.context, limits=lambda: self.limits,
                              is_banned=self.throttle.is_banned)
        await self.pop3.start()
        await self.pop3s.start()

    # -- running things on the service's loop ---------------------------------------------
    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def in_loop(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()
        return self.call(run())

    @property
    def port(self) -> int:
        return self.pop3.bound_port  # type: ignore[return-value]

    @property
    def tls_port(self) -> int:
        return self.pop3s.bound_port  # type: ignore[return-value]

    def set(self, name: str, value: Any) -> None:
        """Change a setting as the admin channel would (stored, then the cache reloaded)."""
        with self.db.write() as session:
            Settings.put(session, name, value)
        self.in_loop(self.settings.reload)

    def client_tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.tls.cert_path))
        context.check_hostname = False
        return context

    # -- mailboxes ------------------------------------------------------------------------
    def add_mailbox(self, address: str, password: str = PASSWORD) -> int:
        name, domain_name = address.split("@")
        with self.db.write() as session:
            domain = session.scalars(select(Domain).where(Domain.name == domain_name)).first()
            if domain is None:
                domain = Domain(name=domain_name)
                session.add(domain)
                session.flush()
            box = Mailbox(domain_id=domain.id, name=name, has_user=True)
            session.add(box)
            session.flush()
            domain.mailbox_count += 1
            self.provider.set_password(session, box.id, password)
            box_id = box.id
        self.store.create_mailbox_folder(domain_name, name)
        return box_id

    def lock(self, address: str, *, domain: bool = False, locked: bool = True) -> None:
        name, domain_name = address.split("@")
        with self.db.write() as session:
            dom = session.scalars(select(Domain).where(Domain.name == domain_name)).one()
            if domain:
                dom.locked = locked
            else:
                box = session.scalars(select(Mailbox).where(Mailbox.domain_id == dom.id, Mailbox.name == name)).one()
                box.locked = locked

    def deliver(self, mailbox_id: int, data: bytes) -> None:
        self.store.deliver(mailbox_id, data)

    def count(self, mailbox_id: int) -> tuple[int, int]:
        with self.db.read() as session:
            box = session.get(Mailbox, mailbox_id)
            return box.message_count, box.total_bytes

    def stats(self) -> dict[str, int]:
        return self.counters.snapshot()

    def close(self) -> None:
        async def stop() -> None:
            await self.pop3.stop()
            await self.pop3s.stop()
            await self.server.close()
        try:
            self.call(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.workers.executor.shutdown(wait=False)
            self.db.dispose()


def message(n: int, body_lines: int = 3) -> bytes:
    lines = [f"From: sender{n}@example.org", "To: alice@example.com", f"Subject: message {n}", ""]
    lines += [f"line {i} of message {n}" for i in range(body_lines)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def pop3(tmp_path: Path):
    harness = Pop3Harness(tmp_path / "data")
    try:
        yield harness
    finally:
        harness.close()


class RawClient:
    """A line-oriented POP3 client over a plain socket, for exact conversations."""

    def __init__(self, port: int, *, tls: ssl.SSLContext | None = None, timeout: float = 10) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def cmd(self, text: str | bytes) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        """The rest of a multi-line response, un-stuffed, without the terminating dot."""
        out = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed inside a multi-line response")
            if line == b".\r\n":
                return out
            out.append(line[1:] if line.startswith(b"..") else line)

    def upgrade(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        self.file = self.sock.makefile("rb")

    def closed(self, timeout: float = 5) -> bool:
        """Has the server closed the connection (reads EOF) within ``timeout``?"""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        for thing in (self.file, self.sock):   # the socket stays open while its file does
            try:
                thing.close()
            except OSError:
                pass
