"""The service's per-minute history: what the status page charts and ``winpop stats`` shows.

Seven series, one value per minute, the last day (1,440 minutes) kept in the database's
``stats_history`` table, one row per (node, minute, series):

    received, delivered, sent, pop3_sessions, failed_logons   counts in that minute: differences of
                                                              the service's counter totals
    queue_size, disk_free_mb                                  samples at the end of the minute

Why the database and not a file in the data directory: several nodes may share one database
(DESIGN §8) and each node's rows are keyed by its own name (``node_name``), so a console on any node could later
chart them all; the history survives a restart (of a node, or on another machine) with the rest
of the service's state; and the writes go through the same pool and threads as every other write.

A minute the service was not running has no rows: the op answers ``null`` there (a gap in the
chart), never 0. Minutes the timer missed while the process ran (a suspended machine) are gaps
too; what was counted meanwhile goes to the minute the count started in. The minute a service
stops in is written at stop with what was counted so far; a restart within the same minute adds
to it. Every write, read and prune runs in a worker thread: the event loop never waits for the
database.

Several processes of one node (worker processes sharing the listeners) share its rows: each adds
its counts to the minute's rows in the database (an upsert: ``value = value + excluded.value``)
and sets the samples, which every process measures alike (the queue is the database's, the disk
the node's). ``stats.history`` reads the table, so it shows the node whatever process answers.
What the database refuses (a full disk) stays in this process's memory, shown in its answers,
and is written with the next minute the database takes.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from core.db import Database
from core.errors import database_error
from core.ipc.ops import STATS_MAX_MINUTES, STATS_SERIES
from core.tables import QueuedMessage, StatsMinute
from service.counters import Counters
from service.disk import DiskWatch
from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

INTERVAL = 60                # seconds in one step of every series
KEEP_MINUTES = STATS_MAX_MINUTES   # one day, in memory and in the table

# Counted series: the counters (service/counters.py) whose per-minute differences they are.
COUNTED: dict[str, tuple[str, ...]] = {
    "received": ("smtp_accepted",),                     # messages accepted by SMTP (any listener)
    "delivered": ("smtp_delivered",),                   # deliveries into local mailboxes
    "sent": ("smtp_relayed",),                          # deliveries to other servers
    "pop3_sessions": ("pop3.sessions_total",),          # POP3 sessions opened
    "failed_logons": ("pop3.logon_failures", "smtp_logon_failures", "admin_tcp.failures"),
}
# Every series, in the op table's order; those not counted (queue_size, disk_free_mb) are sampled at
# the end of the minute. A test checks that COUNTED is exactly the op table's counted series.
SERIES = tuple(STATS_SERIES)

Clock = Callable[[], float]


def node_name(data_dir: Path) -> str:
    """This node's key in the table: its host name and its data directory, so that two services on
    one machine sharing a database keep apart, and a restart finds its own rows again."""
    where = hashlib.sha256(str(data_dir.resolve()).encode("utf-8")).hexdigest()[:12]
    return f"{socket.gethostname()[:100]}:{where}"


def minute_of(seconds: float) -> int:
    """The number of the minute (epoch seconds // 60) that ``seconds`` falls in."""
    return int(seconds // INTERVAL)


class History:
    """The per-minute series of one service node (see the module's docstring)."""

    def __init__(self, *, db: Database, node: str, counters: Counters, disk: DiskWatch,
                 run: Callable[..., Any], clock: Clock = time.time, keep: int = KEEP_MINUTES) -> None:
        self._db = db
        self.node = node[:128]
        self._counters = counters
        self._disk = disk
        self._run = run                  # Workers.run: blocking work off the loop
        self._clock = clock
        self._keep = keep
        self._lock = threading.Lock()    # _pending is written and read in worker threads
        # What this process measured and the database has not taken yet (a full disk): per minute,
        # the counts to add and the samples to set. Written with the next minute it takes.
        self._pending: dict[int, dict[str, int]] = {}
        self._open = minute_of(clock())  # the minute now being counted
        self._base = counters.snapshot()
        self._rolling = asyncio.Lock()
        self._task: asyncio.Task | None = None

    # -- reading ------------------------------------------------------------------------------
    def series(self, minutes: int = 60) -> dict[str, Any]:
        """The last ``minutes`` full minutes of every series, oldest first; ``None`` where no
        process of this node was running (the stats.history op's result). Read from the table,
        so it holds what every process of the node wrote, plus what this one could not write
        yet (blocking: through Workers.run)."""
        minutes = max(1, min(int(minutes), STATS_MAX_MINUTES))
        end = minute_of(self._clock())          # the minute now running: not full yet
        span = range(end - minutes, end)
        rows: dict[int, dict[str, int]] = {}
        with self._db.read() as session:
            for minute, name, value in session.execute(
                    select(StatsMinute.minute, StatsMinute.series, StatsMinute.value)
                    .where(StatsMinute.node == self.node, StatsMinute.minute >= span.start,
                           StatsMinute.minute < span.stop)):
                rows.setdefault(int(minute), {})[name] = int(value)
        with self._lock:
            for minute, pending in self._pending.items():
                if minute in span:
                    _merge(rows.setdefault(minute, {}), pending)
        return {"interval": INTERVAL, "end": end * INTERVAL,
                "series": {name: [rows[m].get(name) if m in rows else None for m in span] for name in SERIES}}

    # -- start and stop ------------------------------------------------------------------------
    def start(self) -> None:
        """Roll over at the end of every minute (the Runtime's serve phase)."""
        self._task = asyncio.get_running_loop().create_task(self._tick(), name="stats-history")

    async def stop(self) -> None:
        """Stop the timer and write the minute counted so far (a restart in it adds to it)."""
        await cancel_and_wait(self._task)
        self._task = None
        async with self._rolling:
            try:
                await self._record(self._open, self.minute_now())
            except Exception:   # the history is worth less than a clean stop
                log.exception("could not write the statistics of the last minute")
            if self._pending:
                log.warning("statistics of %d minutes were not written (the database took no writes); "
                            "the charts show gaps there after a restart", len(self._pending))

    async def _tick(self) -> None:
        while True:
            now = self._clock()
            await asyncio.sleep(max(0.5, INTERVAL - now % INTERVAL + 0.05))
            try:
                await self.roll()
            except Exception:   # never fatal: the next minute tries again
                log.exception("could not record the statistics of the last minute")

    # -- the minute's end -------------------------------------------------------------------------
    async def roll(self) -> bool:
        """If a minute ended since the last roll, record it; True if one was. Called by the timer
        and by stats.history (so the answer includes the minute that just ended)."""
        async with self._rolling:
            now = minute_of(self._clock())
            if now <= self._open:
                return False
            ended, self._open = self._open, now
            await self._record(ended, self.minute_now())
            return True

    def minute_now(self) -> dict[str, int | None]:
        """The counts since the last roll and the samples now (on the loop: memory only)."""
        totals = self._counters.snapshot()
        base, self._base = self._base, totals
        values: dict[str, int | None] = {
            name: sum(totals.get(c, 0) - base.get(c, 0) for c in counters) for name, counters in COUNTED.items()}
        free = [int(d["free_bytes"]) for d in self._disk.snapshot()]
        values["disk_free_mb"] = min(free) // 2**20 if free else None   # the fullest disk decides
        return values

    async def _record(self, minute: int, values: dict[str, int | None]) -> None:
        await self._run(self._store, minute, values)

    def _store(self, minute: int, values: Mapping[str, int | None]) -> None:
        """Add one minute's counts to the table and set its samples; prune what is older than a
        day (blocking). Counts are added in the database (an upsert), not replaced: a restart
        within the minute, or another process of the same node, adds to what is there."""
        try:
            with self._db.read() as session:
                queued = session.scalar(select(func.count()).select_from(QueuedMessage))
        except Exception as exc:
            if database_error(exc) is None:
                raise
            queued = None   # the database is busy: no sample this minute, not a made-up 0
        measured = {name: int(values.get(name) or 0) for name in COUNTED}
        if queued is not None:
            measured["queue_size"] = int(queued)
        if values.get("disk_free_mb") is not None:
            measured["disk_free_mb"] = int(values["disk_free_mb"] or 0)
        cutoff = minute_of(self._clock()) - self._keep
        with self._lock:
            _merge(self._pending.setdefault(minute, {}), measured)
            for old in [m for m in self._pending if m < cutoff]:
                del self._pending[old]
            pending = {m: dict(row) for m, row in sorted(self._pending.items())}
        try:
            with self._db.write() as session:
                for at, row in pending.items():
                    counted = [(name, value) for name, value in row.items() if name in COUNTED]
                    sampled = [(name, value) for name, value in row.items() if name not in COUNTED]
                    self._upsert(session, at, counted, add=True)
                    self._upsert(session, at, sampled, add=False)
                # Every node prunes every node's old rows: a node that left does not keep its day forever.
                session.execute(delete(StatsMinute).where(StatsMinute.minute < cutoff))
        except Exception as exc:
            refusal = database_error(exc)
            if refusal is None:
                raise
            # A full disk or a lock held too long: the minutes stay in memory (the charts still show
            # them) and are written with the next minute that the database takes. One line per
            # outage, not one per minute.
            if len(pending) == 1:
                log.warning("statistics kept in memory until the database takes writes again: %s", refusal)
            return
        with self._lock:   # _store runs one at a time (roll and stop hold _rolling): all of it is written
            for at in pending:
                self._pending.pop(at, None)
        if len(pending) > 1:
            log.info("statistics of %d minutes kept in memory are written to the database again", len(pending))

    def _upsert(self, session: Any, minute: int, values: list[tuple[str, int]], *, add: bool) -> None:
        """Insert the values of one minute, or on an existing row add to it (counts) or replace
        it (samples). SQLite and PostgreSQL spell it alike (INSERT ... ON CONFLICT DO UPDATE)."""
        if not values:
            return
        insert = sqlite_insert if self._db.is_sqlite else postgresql_insert
        statement = insert(StatsMinute).values(
            [{"node": self.node, "minute": minute, "series": name, "value": value} for name, value in values])
        statement = statement.on_conflict_do_update(
            index_elements=[StatsMinute.node, StatsMinute.minute, StatsMinute.series],
            set_={"value": StatsMinute.value + statement.excluded.value if add else statement.excluded.value})
        session.execute(statement)


def _merge(row: dict[str, int], more: Mapping[str, int]) -> None:
    """Counts add up; a sample replaces the one before it."""
    for name, value in more.items():
        row[name] = row.get(name, 0) + value if name in COUNTED else value
