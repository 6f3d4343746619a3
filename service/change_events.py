"""Counter changes of mailboxes and domains (a delivery, a POP3 QUIT) as admin-channel events,
coalesced: only the first change of a quarter second wakes the event loop, not every delivery."""
from __future__ import annotations

import asyncio
import threading

from sqlalchemy import select

from core.admin import domain_info, mailbox_info
from core.db import Database
from core.model import DomainInfo, MailboxInfo
from core.tables import Domain, Mailbox
from service.event_bus import Publisher
from service.workers import Runs

FLUSH_AFTER = 0.25   # seconds


class CounterEvents:
    """Turns the store's change hook into ``mailbox.changed`` and ``domain.changed`` events."""

    def __init__(self, db: Database, events: Publisher, workers: Runs, loop: asyncio.AbstractEventLoop) -> None:
        self.db = db
        self.events = events
        self.workers = workers
        self.loop = loop
        self._changed: set[int] = set()    # mailboxes whose counters moved, for the next events
        self._flush_scheduled = False
        self._lock = threading.Lock()
        self._closed = False               # shutting down: no new work for the store's threads

    def store_changed(self, mailbox_ids: set[int]) -> None:
        """The store's change hook: called from a store thread after counters moved."""
        with self._lock:
            self._changed |= mailbox_ids
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self.loop.call_soon_threadsafe(
            self.loop.call_later, FLUSH_AFTER, lambda: self.loop.create_task(self._flush()))

    def close(self) -> None:
        """At shutdown: publish nothing more (the store's threads are going away)."""
        self._closed = True

    async def _flush(self) -> None:
        with self._lock:
            ids, self._changed = self._changed, set()
            self._flush_scheduled = False

        def load() -> tuple[list[MailboxInfo], list[DomainInfo]]:
            with self.db.read() as session:
                rows = session.execute(select(Mailbox, Domain).join(Domain, Domain.id == Mailbox.domain_id)
                                       .where(Mailbox.id.in_(list(ids)[:500]))).all()
                boxes = [mailbox_info(m, d) for m, d in rows]
                domains = {d.id: domain_info(d) for _m, d in rows}
            return boxes, list(domains.values())

        if self._closed:
            return     # the store's threads are going away; nobody is left to tell
        boxes, domains = await self.workers.run(load)
        for info in boxes:
            self.events.publish("mailbox.changed", info)
        for domain in domains:
            self.events.publish("domain.changed", domain)
