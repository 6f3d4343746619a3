"""A real SMTP service in this process for the SMTP tests: its own event loop thread, a temporary
database and mail root, listeners on 127.0.0.1 port 0. Also the harness's own smoke test."""
from __future__ import annotations

import asyncio
import smtplib
import threading
from pathlib import Path
from typing import Any

import pytest

from core.admin import Admin
from core.auth.keystore import ServerKey
from core.auth.provider import PasswordFileProvider
from core.db import Database
from core.sealer import Sealer
from core.settings import Settings
from core.store import MailStore
from service.auth_methods import FixedAuth
from service.counters import Counters
from service.event_bus import EventBus
from service.listeners import Listener
from service.live_settings import LiveSettings
from service.smtp.server import SmtpServer
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

# The SMTP tests import client_tls and wait_for from here.
from tests.support import db_url_for, wait_for  # noqa: F401
from tests.support import unverified_tls as client_tls

PASSWORD = "correct horse 9"
FAST = {"throttle_delay_ms": 0, "queue_retry_interval": 1, "queue_warn_after": 3600, "queue_lifetime": 3600}


class SmtpHarness:
    """One SMTP service (the real SmtpServer behind real Listeners) on a loop thread."""

    def __init__(self, root: Path, *, settings: dict[str, Any] | None = None, listen: bool = True,
                 throttle: bool = True, ports: dict[str, int] | None = None) -> None:
        self.fixed_ports = dict(ports or {})
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.db = Database(db_url_for(self.root / "service.db"))
        self.db.upgrade()
        with self.db.write() as session:
            for name, value in {**FAST, **(settings or {})}.items():
                Settings.put(session, name, value)
        self.store = MailStore(self.db, self.root / "mailroot", hostname="test")
        self.settings = LiveSettings.load(self.db, fallback_hostname="mx.test")
        self.workers = Workers(self.loop)
        self.statistics = Counters()
        self.events = EventBus(self.loop)
        self.sealer = Sealer(ServerKey.generate())
        self.provider = PasswordFileProvider(self.db, ServerKey.generate(), mailroot=self.store.root)
        self.tls = TlsMaterial(self.root, "localhost")
        self.throttle = (LoginThrottle(self.db, self.settings, self.workers, self.statistics, self.events)
                         if throttle else None)
        self.listeners: dict[str, Listener] = {}
        self.server = SmtpServer(loop=self.loop, db=self.db, store=self.store, data_dir=self.root,
                                 settings=self.settings, workers=self.workers, counters=self.statistics,
                                 events=self.events, auth=FixedAuth(self.provider), tls=self.tls,
                                 throttle=self.throttle, listeners=self.listeners, sealer=self.sealer)
        self.admin = Admin(self.db, self.store, auth=self.provider, publish=self.events.publish,
                           sealer=self.sealer)
        self.ports: dict[str, int] = {}
        if listen:
            self.call(self._listen())

    async def _listen(self) -> None:
        for name in ("smtp", "submission", "smtps"):
            listener = Listener(name, "smtp", "127.0.0.1", self.fixed_ports.get(name, 0),
                                self.server.protocol_factory(name), refusal=self.server.refusal,
                                ssl_context=self.tls.context if name == "smtps" else None,
                                limits=self.settings.limits,
                                is_banned=self.throttle.is_banned if self.throttle is not None else None)
            await listener.start()
            self.listeners[name] = listener
            self.ports[name] = listener.bound_port
        await self.server.start()

    def call(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def set(self, name: str, value: Any) -> None:
        self.admin.settings_set(name, value)
        self.settings.reload()

    def add_domain(self, name: str) -> None:
        self.admin.domain_add(name)

    def add_mailbox(self, address: str, password: str = PASSWORD, quota: Any = None) -> None:
        self.admin.mailbox_add(address, password=password, quota=quota)

    def messages(self, address: str) -> list[bytes]:
        info = self.admin.mailbox_get(address)
        name, domain = address.split("@")
        with self.db.read() as session:
            from sqlalchemy import select

            from core.tables import Domain, Mailbox
            mid = session.scalar(select(Mailbox.id).join(Domain, Domain.id == Mailbox.domain_id)
                                 .where(Domain.name == domain, Mailbox.name == name))
        assert info
        return [Path(m.path).read_bytes() for m in self.store.list_messages(mid)]

    def counters(self) -> dict[str, int]:
        return self.statistics.snapshot()

    def queue(self) -> list[dict]:
        return self.call(self.server.queue_list())

    def client(self, listener: str = "smtp", **kwargs: Any) -> smtplib.SMTP:
        if listener == "smtps":
            return smtplib.SMTP_SSL("127.0.0.1", self.ports["smtps"], context=client_tls(), timeout=20, **kwargs)
        return smtplib.SMTP("127.0.0.1", self.ports[listener], timeout=20, **kwargs)

    def close(self) -> None:
        async def shutdown() -> None:
            for listener in self.listeners.values():
                await listener.stop()
            await self.server.stop()
        try:
            self.call(shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.workers.executor.shutdown(wait=True)
            self.db.dispose()


@pytest.fixture
def smtp_service(tmp_path: Path):
    harness = SmtpHarness(tmp_path / "a")
    harness.add_domain("example.com")
    harness.add_mailbox("alice@example.com")
    harness.add_mailbox("bob@example.com")
    yield harness
    harness.close()


def free_port() -> int:
    """A port nobody listens on (bound and released; the kernel does not hand it out again at once)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def message(subject: str = "hello", body: str = "Hi there.\r\n", sender: str = "carol@remote.test",
            to: str = "alice@example.com") -> bytes:
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n\r\n{body}").encode()


def test_harness_delivers_one_message(smtp_service: SmtpHarness) -> None:
    with smtp_service.client() as client:
        client.sendmail("carol@remote.test", ["alice@example.com"], message())
    stored = smtp_service.messages("alice@example.com")
    assert len(stored) == 1 and b"Subject: hello" in stored[0]
