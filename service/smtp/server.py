"""The SMTP service of one process, assembled from its parts:

    protocol.py       aiosmtpd's protocol per listener: session and time limits, refusals, the 421 at shutdown
    aiosmtpd_hooks.py every use of aiosmtpd's internals (the protocol subclass, its log)
    handler.py        the hooks of one listener: EHLO, AUTH, MAIL, RCPT, DATA
    authenticator.py  SMTP AUTH over the core SASL mechanisms, with the login throttle
    policy.py         who may send where: Directory, RelayPolicy, SendingLimit
    intake.py         local delivery: an accepted message into the store and the queue, then 250
    queue.py          the outgoing queue: spool, table, what is due, retries, reports
    delivery.py       its SMTP client: routes (static, smart host, MX) and sending one message
    relaytest.py      the open-relay self-test

service/app.py builds one ``SmtpServer``, makes a Listener per name (``smtp`` 25, ``submission``
587 with STARTTLS, ``smtps`` 465 with implicit TLS) from ``protocol_factory(name)`` and
``refusal``, then calls ``start()`` and, at shutdown, ``stop()``.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from core.db import Database
from core.sealer import Sealer
from core.store import MailStore
from service.auth_methods import AuthSource
from service.counters import Counters
from service.event_bus import EventBus
from service.listeners import Listener, Refusal
from service.live_settings import LiveSettings
from service.smtp.authenticator import SaslAuthenticator
from service.smtp.delivery import RemoteDelivery, local_helo
from service.smtp.handler import SmtpHandler
from service.smtp.intake import MessageIntake
from service.smtp.policy import Directory, RelayPolicy, SendingLimit
from service.smtp.protocol import SmtpProtocols
from service.smtp.queue import OutboundQueue
from service.smtp.relaytest import RelaySelfTest
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

log = logging.getLogger("service.smtp")


class SmtpServer:
    """Builds the SMTP parts and wires them; the admin channel's queue.* and relay.test go to them."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, db: Database, store: MailStore, data_dir: Path,
                 settings: LiveSettings, workers: Workers, counters: Counters, events: EventBus, auth: AuthSource,
                 tls: TlsMaterial, throttle: LoginThrottle | None, listeners: Mapping[str, Listener],
                 sealer: Sealer | None) -> None:
        self.settings = settings
        self.workers = workers
        self.counters = counters
        self.auth = auth
        self.tls = tls
        self.throttle = throttle
        # The service's listeners by name (its own three among them), filled as they are made:
        # at shutdown this pauses its own, and relay.test finds the port 25 one.
        self.listeners = listeners
        # Who may send where.
        self.directory = Directory(db, settings, workers)
        events.subscribe(self.directory.on_event)
        self.relay = RelayPolicy(settings)
        self.sending_limit = SendingLimit(settings, counters, events)
        # Where accepted mail goes: the store, or the queue and its client.
        self.queue = OutboundQueue(loop=loop, db=db, store=store, data_dir=data_dir, settings=settings,
                                   workers=workers, counters=counters, client=RemoteDelivery(settings, sealer))
        self.intake = MessageIntake(settings=settings, store=store, queue=self.queue, workers=workers,
                                    counters=counters)
        # The protocol, a handler per listener.
        self.protocols = SmtpProtocols(loop=loop, settings=settings, tls=tls, hostname=lambda: self.hostname)
        self._handlers: dict[str, SmtpHandler] = {}
        self.relay_test_run = RelaySelfTest(listeners=listeners, directory=self.directory,
                                            hostname=lambda: self.hostname)

    @property
    def hostname(self) -> str:
        """The name in greetings, Received: fields and HELO (follows the hostname setting)."""
        return local_helo(self.settings.hostname)

    # -- what service/app.py calls ----------------------------------------------------------
    def protocol_factory(self, name: str) -> Callable[[], asyncio.BaseProtocol]:
        """A factory of aiosmtpd protocols for the listener ``name``."""
        handler = self._handlers.get(name)
        if handler is None:
            handler = self._handlers[name] = self._handler(name)
        return self.protocols.factory(name, handler)

    def _handler(self, name: str) -> SmtpHandler:
        authenticator = SaslAuthenticator(listener=name, settings=self.settings, auth=self.auth, workers=self.workers,
                                          counters=self.counters, throttle=self.throttle)
        return SmtpHandler(name, settings=self.settings, counters=self.counters, workers=self.workers,
                           authenticator=authenticator, directory=self.directory, relay=self.relay,
                           sending_limit=self.sending_limit, intake=self.intake, hostname=lambda: self.hostname)

    def refusal(self, reason: Refusal) -> bytes:
        return self.protocols.refusal(reason)

    async def start(self) -> None:
        await self.queue.start()
        log.info("smtp queue runner started")

    async def stop(self) -> None:
        """Say 421 to every open SMTP session (RFC 5321 §3.8), then stop the queue."""
        goodbye = f"421 4.3.2 {self.hostname} Service shutting down, closing transmission channel\r\n".encode()
        for name in self._handlers:
            listener = self.listeners.get(name)
            if listener is not None:   # until the daemon closes it, a newcomer gets the paused 421
                listener.pause()
            self.protocols.goodbye(name, goodbye)
        await self.queue.stop()

    # -- the admin channel's queue.* and relay.test ops -----------------------------------
    async def queue_list(self) -> list[dict]:
        return await self.workers.run(self.queue.list)

    async def queue_retry(self, ident: int | str | None = None) -> int:
        count = await self.workers.run(self.queue.retry, ident)
        self.queue.wake()
        return count

    async def queue_delete(self, ident: int | str) -> int:
        return await self.workers.run(self.queue.delete, ident)

    async def queue_show(self, ident: int | str) -> dict:
        return await self.workers.run(self.queue.show, ident)

    async def relay_test(self, target_host: str = "", port: int | None = None) -> list[dict]:
        """Try the classic open-relay tricks against a running SMTP listener (this server's port
        25 listener unless told otherwise) and report each."""
        return await self.relay_test_run.run(target_host, port)
