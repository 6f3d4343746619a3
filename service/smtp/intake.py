"""Delivery of an accepted message: made safe for every recipient (the outgoing queue for remote
ones, the mail store for local ones) before the client hears 250 (DESIGN §5), or refused with a
4xx/5xx a person can act on."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from datetime import UTC, datetime

from core.errors import DiskFull, MailError, NotFound, QuotaExceeded, Unavailable, database_error
from core.store import MailStore
from service.counters import Counters
from service.live_settings import SettingsReader
from service.smtp.dsn import RecipientStatus
from service.smtp.policy import Address, LocalMailbox
from service.smtp.queue import OutboundQueue
from service.smtp.replies import (
    MAILBOX_FULL_PERM,
    MAILBOX_FULL_TEMP,
    MAILBOX_REMOVED,
    STORE_FULL,
    TEMP_ERROR,
)
from service.workers import Workers

log = logging.getLogger("service.smtp")

# At most 16 deliveries in the store's 32 threads at once, leaving the others for POP3 and the
# admin channel. They write and fsync their files in parallel; the store's group commit then
# gives them one fsync per folder and one index transaction (on SQLite one writer commits for
# all, so none of them waits in SQLite's busy handler). Measured with 20 connections: 8 at once
# gave 856 messages/s, 16 gave 955, 24 no better than 16.
STORE_DELIVERIES = 16


def delivery_reply(exc: MailError, *, tempfail: bool = True) -> str:
    """The DATA reply for a store refusal; ``tempfail`` is the quota_full_tempfail setting."""
    if isinstance(exc, QuotaExceeded):
        permanent = exc.permanent or not tempfail
        return MAILBOX_FULL_PERM if permanent else MAILBOX_FULL_TEMP
    if isinstance(exc, DiskFull):   # RFC 3463 4.3.1: a full disk, not any other trouble (issue 14)
        return STORE_FULL
    if isinstance(exc, Unavailable):   # e.g. the database's write lock held too long: just try again
        return TEMP_ERROR
    if isinstance(exc, NotFound):
        return MAILBOX_REMOVED
    return TEMP_ERROR


class MessageIntake:
    """Takes a received message: local recipients through the store, remote ones into the queue."""

    def __init__(self, *, settings: SettingsReader, store: MailStore, queue: OutboundQueue, workers: Workers,
                 counters: Counters) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.workers = workers
        self.counters = counters
        self._store_gate = asyncio.Semaphore(STORE_DELIVERIES)

    async def accept(self, data: bytes, *, sender: str, local: list[LocalMailbox], remote: list[Address],
                     queue_id: str, submitted_by: str, client: str) -> str:
        """Make the message safe for every recipient (queue, then mailboxes), then say 250."""
        queued = False
        try:
            if remote:
                await self.workers.run(self.queue.enqueue, sender, [(a.text, a.domain) for a in remote], data,
                                       submitted_by=submitted_by, client=client, queue_id=queue_id)
                queued = True
            if local:
                await self._deliver_local(data, sender, local)
        except Exception as exc:
            # A full disk or a busy database: a 4xx worded for a person, not a traceback.
            refusal = database_error(exc)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                refusal = DiskFull("The outgoing mail spool is out of disk space; free space in the data directory.")
            if queued:   # all or nothing: the client will send again
                with contextlib.suppress(Exception):
                    await self.workers.run(self.queue.discard, queue_id)
            if refusal is None:
                raise
            log.warning("smtp: message from %s <%s> not accepted: %s", client, sender, refusal.message)
            self.counters.incr("smtp_refused")
            return delivery_reply(refusal, tempfail=bool(self.settings.get("quota_full_tempfail")))
        self.counters.incr("smtp_accepted")
        if local:
            self.counters.incr("smtp_delivered", len(local))
        if queued:
            self.queue.wake()
        log.info("smtp: accepted %s from %s <%s>: %d local, %d remote recipient(s), %d bytes",
                 queue_id, client, sender, len(local), len(remote), len(data))
        return f"250 2.0.0 OK: queued as {queue_id}"

    async def _deliver_local(self, data: bytes, sender: str, boxes: list[LocalMailbox]) -> None:
        """One file hard-linked into every mailbox. If the quota moved since RCPT, deliver to those
        that still have room and report the rest to the sender (the 250 covers the message)."""
        store = self.store
        ids = [b.id for b in boxes]
        try:
            # Always in a worker thread, even for a lone client: a delivery waits on the disk and
            # on the database's write lock, and the event loop must never wait (issue 14).
            async with self._store_gate:
                await self.workers.run(store.deliver_many, ids, data)
            return
        except QuotaExceeded:
            if len(boxes) == 1:
                raise
        full = []
        for box in boxes:
            try:
                await self.workers.run(store.deliver_many, [box.id], data)
            except QuotaExceeded as exc:
                full.append((box, exc))
        if len(full) == len(boxes):
            raise full[0][1]
        tempfail = bool(self.settings.get("quota_full_tempfail"))
        statuses = [RecipientStatus(b.address, "5.2.2" if e.permanent or not tempfail else "4.2.2", e.message)
                    for b, e in full]
        await self.workers.run(self.queue.report, sender, statuses, data, arrival=datetime.now(UTC),
                               delayed=False, is_report=not sender)
