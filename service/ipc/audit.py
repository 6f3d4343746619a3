"""The admin channel's audit entries that the database could not take yet (issue 14)."""
from __future__ import annotations

import collections
import logging
import threading
from datetime import UTC, datetime

from core.admin import Admin
from service.workers import Runs

log = logging.getLogger("service.ipc.server")


class PendingAudit:
    """Audit entries the database could not take (a full disk, a lock held too long): kept in
    memory, in order, and written with their own times as soon as it takes writes again, so a
    refusal made while the disk was full is in the audit log afterwards (issue 14)."""

    LIMIT = 10_000   # entries kept; past it the oldest go (and the service log says so)

    def __init__(self, workers: Runs, admin: Admin) -> None:
        self.workers = workers
        self.admin = admin
        self.entries: collections.deque[tuple] = collections.deque()
        self.dropped = 0
        self._lock = threading.Lock()

    async def write(self, actor: str, op: str, target: str, detail: str, outcome: str) -> None:
        """Write one entry (after any kept ones), off the event loop; keep it if refused."""
        self.entries.append((actor, op, target, detail, outcome, datetime.now(UTC)))
        await self.flush()

    async def flush(self) -> None:
        """Write the kept entries now (also when a full disk has room again)."""
        await self.workers.run(self._flush)

    def _flush(self) -> None:
        with self._lock:   # one writer at a time keeps the order and writes each entry once
            while len(self.entries) > self.LIMIT:
                self.entries.popleft()
                self.dropped += 1
            self._write_kept()

    def _write_kept(self) -> None:
        while self.entries:
            actor, op, target, detail, outcome, at = self.entries[0]
            if not self.admin.audit(actor, op, target, detail, outcome, at=at):
                if len(self.entries) == 1 or len(self.entries) % 100 == 0:
                    log.warning("audit entries kept in memory until the database takes writes again: %d",
                                len(self.entries))
                return
            self.entries.popleft()
        if self.dropped:
            log.error("%d audit entries were lost while the database could not be written", self.dropped)
            self.dropped = 0
