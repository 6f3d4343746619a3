"""The outgoing queue: durable, retried, reported.

A message for another domain is written to ``<data dir>/queue/msg/<queue id>`` (tmp, fsync,
rename, fsync the folder) and indexed in ``smtp_queue`` / ``smtp_queue_recipients`` before the
client hears 250, so a crash loses nothing acknowledged and :meth:`OutboundQueue.reconcile`
drops whatever was written but never acknowledged. Each recipient keeps its own retry state;
the runner claims due recipients with a lease (several nodes may share the database), delivers
them per (message, domain), backs off on temporary failures, sends a delay notice after
``queue_warn_after`` and a non-delivery report (RFC 3464) when it gives up.

Several nodes (issue 8): on PostgreSQL the spool lives on the shared mail root, under
``<mail root>/.queue/``, so whichever node claims a message can read it; claims are row leases
taken with ``FOR UPDATE SKIP LOCKED``, renewed while the attempt runs, and a node that dies
leaves its claims to expire after ``queue_lease`` seconds, when another node takes them.

Delivery is at least once: a crash between the remote server's 250 and our commit makes the
message go again after the restart (RFC 5321 §6.1 accepts duplicates over losses).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Result, delete, func, or_, select, update

from core.db import Database
from core.errors import MailError, NotFound, Unavailable, database_error
from core.store import MailStore
from core.store.maildir import fsync_dir, write_durably
from core.tables import Domain, Mailbox, QueuedMessage, QueuedRecipient
from service.counters import Counters
from service.live_settings import LiveSettings
from service.smtp.delivery import Outcome, RemoteDelivery, Route, local_helo
from service.smtp.dsn import RecipientStatus, build_report
from service.workers import Runs

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=15)   # when the queue_lease setting is not registered
SHARED_GRACE = 600               # a younger unindexed spool file may be another node's enqueue in flight
MAX_BACKOFF = 3600
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
PREVIEW_BYTES = 1024
REPEAT_LOG_INTERVAL = 600.0      # seconds between two log lines counting the same repeated error


def new_queue_id() -> str:
    """A new message's queue id: unique, roughly in arrival order."""
    return f"{time.time_ns():x}{secrets.token_hex(6)}".upper()


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def rows_changed(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed."""
    return int(cast(CursorResult[Any], result).rowcount or 0)


def backoff(attempts: int, base: int) -> int:
    """Seconds before the next try: ``base``, doubling per attempt, at most an hour."""
    return int(min(MAX_BACKOFF, base * 2 ** max(0, attempts - 1)))


class RepeatedErrors:
    """Log an error once, then count its repeats and log the count at most every ``interval``
    seconds (and at stop): a failure on every try must not flood the log (issue 13)."""

    def __init__(self, logger: logging.Logger, interval: float = REPEAT_LOG_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._seen: dict[str, list[Any]] = {}   # key -> [repeats not yet logged, last logged at, message]

    def report(self, key: str, message: str, *args: Any, exc_info: bool = False) -> None:
        """Log ``message`` if ``key`` is new; otherwise count it, logging the count when due. A
        database that takes no writes (a full disk, a lock held too long) is a state the disk
        watch already reports, not a bug: logged without a traceback."""
        if exc_info and database_error(sys.exc_info()[1] or Exception()) is not None:
            exc_info = False
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= 100:   # bounded, whatever a hostile peer makes us fail with
                self.flush()
            self._seen[key] = [0, now, message % args if args else message]
            self.logger.error(message, *args, exc_info=exc_info)
            return
        entry[0] += 1
        if now - entry[1] >= self.interval:
            self._log_repeats(entry, now)

    def flush(self) -> None:
        """Log the counts not logged yet and forget every error."""
        now = time.monotonic()
        for entry in self._seen.values():
            if entry[0]:
                self._log_repeats(entry, now)
        self._seen.clear()

    def _log_repeats(self, entry: list[Any], now: float) -> None:
        self.logger.error("%s (the same error %d more time(s) in %d s)", entry[2], entry[0], round(now - entry[1]))
        entry[0], entry[1] = 0, now


@dataclass(frozen=True)
class Batch:
    """Recipients of one message in one domain, claimed for one delivery attempt."""

    message_id: int
    queue_id: str
    domain: str
    sender: str
    recipient_ids: tuple[int, ...]
    addresses: tuple[str, ...]


class OutboundQueue:
    """The spool folder, the queue tables and the runner that empties them."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, db: Database, store: MailStore, data_dir: Path,
                 settings: LiveSettings, workers: Runs, counters: Counters, client: RemoteDelivery) -> None:
        self.loop = loop
        self.db = db
        self.store = store
        self.settings = settings
        self.workers = workers
        self.counters = counters
        self.shared = not db.is_sqlite
        self.legacy_dir = Path(data_dir) / "queue"
        # One node: the data directory. Several (PostgreSQL): the mail root they share.
        self.dir = Path(store.root) / ".queue" if self.shared else self.legacy_dir
        self.client = client              # routes and sends; a fresh resolver per attempt follows the settings
        self.node = f"{socket.gethostname()}:{Path(data_dir).resolve()}"[:128]
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._heartbeat: asyncio.Task | None = None
        self.errors = RepeatedErrors(log)

    def lease(self) -> timedelta:
        """How long a claim lasts without renewal (the queue_lease setting)."""
        try:
            return timedelta(seconds=int(self.settings.get("queue_lease")))
        except KeyError:
            return LEASE

    # -- spool ----------------------------------------------------------------------------
    def prepare(self) -> None:
        for sub in ("tmp", "msg"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)

    def spool_path(self, queue_id: str) -> Path:
        return self.dir / "msg" / queue_id

    def read(self, queue_id: str) -> bytes:
        return self.spool_path(queue_id).read_bytes()

    def enqueue(self, sender: str, recipients: list[tuple[str, str]], data: bytes, *, submitted_by: str = "",
                client: str = "", is_report: bool = False, queue_id: str | None = None) -> str:
        """Store a message for ``recipients`` [(address, domain)] durably; blocking. Returns its id."""
        queue_id = queue_id or new_queue_id()
        tmp = self.dir / "tmp" / queue_id
        final = self.spool_path(queue_id)
        try:
            write_durably(tmp, data)
            os.rename(tmp, final)
            fsync_dir(final.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise Unavailable(f"The outgoing queue cannot store the message: {exc.strerror or exc}.") from None
        now = utcnow()
        try:
            with self.db.write() as session:
                message = QueuedMessage(queue_id=queue_id, sender=sender, size=len(data),
                                        submitted_by=submitted_by[:320], client=client[:64],
                                        is_report=is_report, created_at=now)
                session.add(message)
                session.flush()
                for address, domain in dict.fromkeys(recipients):
                    session.add(QueuedRecipient(message_id=message.id, address=address, domain=domain,
                                                status=PENDING, attempts=0, next_attempt_at=now,
                                                last_error="", delay_notified=False, claimed_by=""))
        except BaseException:
            self.discard(queue_id)
            raise
        self.counters.incr("smtp_queued")
        log.info("queued %s from <%s> for %d recipient(s)", queue_id, sender, len(recipients))
        return queue_id

    def discard(self, queue_id: str) -> bool:
        """Remove a message from the queue (rows and file); False if it was not there."""
        with self.db.write() as session:
            gone = rows_changed(session.execute(delete(QueuedMessage).where(QueuedMessage.queue_id == queue_id)))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool_path(queue_id))
        return bool(gone)

    def reconcile(self) -> dict[str, int]:
        """After a crash: drop unacknowledged spool files, forget rows whose file is gone, and
        release the leases this node held."""
        self.prepare()
        report = {"tmp_removed": 0, "unindexed_removed": 0, "missing_dropped": 0, "leases_released": 0,
                  "adopted": 0}
        # Other nodes may be enqueueing right now into a shared spool: only old leftovers are ours
        # to remove, and the index is read before the folder (a row is committed after its file).
        settled = self._settled if self.shared else (lambda _path: True)
        for entry in os.scandir(self.dir / "tmp"):
            with contextlib.suppress(OSError):
                if settled(entry.path):
                    os.unlink(entry.path)
                    report["tmp_removed"] += 1
        with self.db.read() as session:
            known = set(session.scalars(select(QueuedMessage.queue_id)))
        if self.shared:
            report["adopted"] = self._adopt_legacy(known)
        on_disk = {e.name for e in os.scandir(self.dir / "msg") if e.is_file()}
        with self.db.write() as session:
            missing = sorted(known - on_disk)
            if missing:
                dropped = rows_changed(session.execute(
                    delete(QueuedMessage).where(QueuedMessage.queue_id.in_(missing))))
                if dropped:
                    log.error("queue: %d message(s) lost their spool file and are dropped: %s",
                              dropped, ", ".join(missing[:10]))
                report["missing_dropped"] = dropped
            report["leases_released"] = rows_changed(session.execute(
                update(QueuedRecipient).where(QueuedRecipient.claimed_by == self.node)
                .values(claimed_by="", claimed_until=None)))
        for name in on_disk - known:   # written, never committed, never acknowledged
            if not settled(self.spool_path(name)):
                continue
            with contextlib.suppress(OSError):
                os.unlink(self.spool_path(name))
                report["unindexed_removed"] += 1
        if report["unindexed_removed"] or report["missing_dropped"]:
            log.warning("queue reconcile: %s", report)
        return report

    @staticmethod
    def _settled(path: str | Path) -> bool:
        try:
            return time.time() - os.stat(path).st_mtime > SHARED_GRACE
        except OSError:
            return False

    def _adopt_legacy(self, known: set[str]) -> int:
        """Move queued messages of an installation moved onto PostgreSQL from ``<data dir>/queue``
        to the shared spool, so every node can deliver them."""
        legacy = self.legacy_dir / "msg"
        if not legacy.is_dir() or legacy.resolve() == (self.dir / "msg").resolve():
            return 0
        moved = 0
        for entry in os.scandir(legacy):
            target = self.spool_path(entry.name)
            if entry.name not in known or target.exists():
                continue
            tmp = self.dir / "tmp" / entry.name
            shutil.copyfile(entry.path, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.rename(tmp, target)
            fsync_dir(target.parent)
            os.unlink(entry.path)
            moved += 1
        if moved:
            log.warning("queue: moved %d queued message(s) from %s to the shared spool %s", moved, legacy, self.dir)
        return moved

    # -- the runner -----------------------------------------------------------------------
    async def start(self) -> None:
        await self.workers.run(self.reconcile)
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="smtp-queue")
        self._heartbeat = asyncio.get_running_loop().create_task(self._renew_claims(), name="smtp-queue-lease")

    async def _renew_claims(self) -> None:
        """Keep the claims of running attempts alive (at a third of the lease), so only a node
        that stopped (crashed, lost its database) loses them to another node."""
        while True:
            await asyncio.sleep(max(1.0, self.lease().total_seconds() / 3))
            if not self._running:
                continue
            try:
                await self.workers.run(self._renew)
            except Exception as exc:
                self.errors.report(f"renew: {type(exc).__name__}: {exc}",
                                   "queue: cannot renew the claims of running deliveries: %s", exc, exc_info=True)

    def _renew(self) -> int:
        with self.db.write() as session:
            return rows_changed(session.execute(
                update(QueuedRecipient).where(QueuedRecipient.claimed_by == self.node,
                                              QueuedRecipient.status == PENDING)
                .values(claimed_until=utcnow() + self.lease())))

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=10)   # bounded, whatever the task does
            self._task = None
        # Attempts in worker threads cannot be interrupted; wait for them, bounded.
        if self._running:
            await asyncio.wait(list(self._running), timeout=40)
        self.errors.flush()

    def wake(self) -> None:
        """Look at the queue now (a message was queued, or the administrator said retry)."""
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            assert self._wake is not None
            self._wake.clear()
            wait = 30.0
            try:
                room = int(self.settings.get("queue_concurrency")) - len(self._running)
                if room > 0:
                    batches, wait = await self.workers.run(self._claim_due, room)
                    for batch in batches:
                        task = asyncio.get_running_loop().create_task(self._attempt(batch))
                        self._running.add(task)
                        task.add_done_callback(self._attempt_done)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the runner must survive a database hiccup
                self.errors.report(f"{type(exc).__name__}: {exc}",
                                   "queue runner: cannot read the queue; trying again shortly", exc_info=True)
                wait = 5.0
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow the cancellation that
            # stop() sends when it races with the wake-up, and the runner would never end.
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=max(0.02, min(wait, 30.0)))
            finally:
                waiter.cancel()

    def _attempt_done(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        self.wake()

    async def _attempt(self, batch: Batch) -> None:
        """Resolve the route (asynchronous DNS), deliver in a worker thread, record the result.

        Any failure, ours included, is a try: recorded with back-off and shown as the last error,
        never a release that makes the message due again at once (issue 13: 270 tries a second)."""
        try:
            # Made in a thread: the smart host password is unsealed with the server key (disk, keyring).
            resolver = await self.workers.run(self.client.resolver)
            route = await resolver.route_async(batch.domain)
            await self.workers.run(self.attempt, batch, route)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
            self.errors.report(problem, "queue: delivery of %s to %s failed in the service itself: %s",
                               batch.queue_id, batch.domain, problem, exc_info=True)
            try:
                await self.workers.run(self._failed_attempt, batch, problem)
            except Exception as again:   # the database is away: the lease expires, then a retry
                self.errors.report(f"{type(again).__name__}: {again}",
                                   "queue: cannot record the failed attempt for %s: %s", batch.queue_id, again)

    def _failed_attempt(self, batch: Batch, problem: str) -> None:
        """Record an attempt that ended in an exception as a temporary failure of every recipient."""
        text = f"451 4.3.0 internal error of the mail service: {problem}"[:2000]
        try:
            self.record(batch, {a: Outcome(451, text) for a in batch.addresses})
        except Exception:
            # record() itself is what fails: count the try and back off without it.
            self.errors.report(f"record: {problem}", "queue: cannot record the attempt for %s", batch.queue_id,
                               exc_info=True)
            self._defer(batch, text)

    def _defer(self, batch: Batch, text: str) -> None:
        """The least that keeps the queue from spinning: one more try, a later due time, the error."""
        base = int(self.settings.get("queue_retry_interval"))
        now = utcnow()
        with self.db.write() as session:
            for row in session.scalars(select(QueuedRecipient).where(QueuedRecipient.id.in_(batch.recipient_ids))):
                row.attempts += 1
                row.last_error = text
                row.next_attempt_at = now + timedelta(seconds=backoff(row.attempts, base))
                row.claimed_by, row.claimed_until = "", None

    def _claim_due(self, room: int) -> tuple[list[Batch], float]:
        """Claim up to ``room`` due (message, domain) groups; also say when the next one is due."""
        now = utcnow()
        free = or_(QueuedRecipient.claimed_until.is_(None), QueuedRecipient.claimed_until < now)
        batches: list[Batch] = []
        with self.db.write() as session:
            rows = session.execute(
                select(QueuedRecipient.id, QueuedRecipient.message_id, QueuedRecipient.domain,
                       QueuedRecipient.address, QueuedMessage.queue_id, QueuedMessage.sender)
                .join(QueuedMessage, QueuedMessage.id == QueuedRecipient.message_id)
                .where(QueuedRecipient.status == PENDING, QueuedRecipient.next_attempt_at <= now, free)
                .order_by(QueuedRecipient.next_attempt_at, QueuedRecipient.id)
                .limit(room * 50)
                # PostgreSQL: rows another node is claiming right now are skipped, not waited for.
                .with_for_update(skip_locked=True, of=QueuedRecipient)
            ).all()
            groups: dict[tuple[int, str], list] = {}
            for row in rows:
                key = (row.message_id, row.domain)
                if key in groups or len(groups) < room:
                    groups.setdefault(key, []).append(row)
            for (message_id, domain), members in groups.items():
                ids = [m.id for m in members]
                claimed = rows_changed(session.execute(
                    update(QueuedRecipient).where(QueuedRecipient.id.in_(ids), free)
                    .values(claimed_by=self.node, claimed_until=now + self.lease())))
                if claimed != len(ids):   # another node took part of it: leave the group to it
                    session.execute(update(QueuedRecipient)
                                    .where(QueuedRecipient.id.in_(ids), QueuedRecipient.claimed_by == self.node)
                                    .values(claimed_by="", claimed_until=None))
                    continue
                batches.append(Batch(message_id, members[0].queue_id, domain, members[0].sender, tuple(ids),
                                     tuple(m.address for m in members)))
            upcoming = session.scalar(
                select(func.min(QueuedRecipient.next_attempt_at))
                .where(QueuedRecipient.status == PENDING, free, QueuedRecipient.next_attempt_at > now))
            leased = session.scalar(
                select(func.min(QueuedRecipient.claimed_until))
                .where(QueuedRecipient.status == PENDING, QueuedRecipient.claimed_until >= now,
                       QueuedRecipient.claimed_by != self.node))
        due = [aware(t) for t in (upcoming, leased) if t is not None]
        wait = min((t - utcnow()).total_seconds() for t in due) if due else 30.0
        return batches, wait

    def attempt(self, batch: Batch, route: Route | None = None) -> dict[str, Outcome]:
        """Try to deliver one batch (blocking) along ``route`` (looked up here when not given)
        and record what happened."""
        try:
            data = self.read(batch.queue_id)
        except FileNotFoundError:
            log.error("queue: the spool file of %s is gone; dropping it", batch.queue_id)
            self.discard(batch.queue_id)
            return {}
        if route is None:
            route = self.client.resolver().route(batch.domain)
        outcomes = self.client.deliver(route, sender=batch.sender, recipients=list(batch.addresses), data=data)
        self.record(batch, outcomes)
        return outcomes

    def record(self, batch: Batch, outcomes: dict[str, Outcome]) -> None:
        """Write the outcome of an attempt: delivered, failed (and reported), or retried later."""
        now = utcnow()
        failed: list[RecipientStatus] = []
        delayed: list[RecipientStatus] = []
        with self.db.write() as session:
            message = session.get(QueuedMessage, batch.message_id)
            if message is None:   # deleted by the administrator meanwhile
                return
            created = aware(message.created_at)
            lifetime = int(self.settings.get("queue_lifetime"))
            warn_after = int(self.settings.get("queue_warn_after"))
            base = int(self.settings.get("queue_retry_interval"))
            deadline = created + timedelta(seconds=lifetime)
            rows = session.scalars(select(QueuedRecipient).where(QueuedRecipient.id.in_(batch.recipient_ids))).all()
            for row in rows:
                outcome = outcomes.get(row.address) or Outcome(0, "no attempt was made")
                row.attempts += 1
                row.claimed_by, row.claimed_until = "", None
                row.last_error = "" if outcome.delivered else outcome.text[:2000]
                if outcome.delivered:
                    row.status = DELIVERED
                    self.counters.incr("smtp_relayed")
                    log.info("delivered %s to <%s> via %s", message.queue_id, row.address, outcome.host)
                elif outcome.permanent or now >= deadline:
                    row.status = FAILED
                    reason = outcome.text if outcome.permanent else (
                        f"gave up after {row.attempts} attempt(s) over {lifetime} s; last error: {outcome.text}")
                    status = outcome.status if outcome.permanent else "4.4.7"
                    failed.append(RecipientStatus(row.address, "5" + status[1:] if not outcome.permanent
                                                  else status, reason, outcome.host))
                    log.warning("queue: %s to <%s> failed: %s", message.queue_id, row.address, reason)
                else:
                    later = now + timedelta(seconds=backoff(row.attempts, base))
                    row.next_attempt_at = min(later, deadline) if deadline > now else later
                    if not row.delay_notified and now - created >= timedelta(seconds=warn_after):
                        row.delay_notified = True
                        delayed.append(RecipientStatus(row.address, outcome.status, outcome.text, outcome.host))
                    log.info("queue: %s to <%s> deferred (attempt %d): %s", message.queue_id, row.address,
                             row.attempts, outcome.text)
            session.flush()
            left = session.scalar(select(func.count(QueuedRecipient.id)).where(
                QueuedRecipient.message_id == message.id, QueuedRecipient.status == PENDING))
            sender, is_report, queue_id = message.sender, message.is_report, message.queue_id
            if not left:
                session.delete(message)
        if failed or delayed:
            data = None
            with contextlib.suppress(OSError):
                data = self.read(queue_id)
            if data is not None:
                if failed:
                    self.counters.incr("smtp_bounced", len(failed))
                    self.report(sender, failed, data, arrival=created, delayed=False, is_report=is_report)
                if delayed:
                    self.report(sender, delayed, data, arrival=created, delayed=True, is_report=is_report,
                                retry_until=deadline)
        if not left:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.spool_path(queue_id))

    # -- reports --------------------------------------------------------------------------
    def report(self, sender: str, recipients: list[RecipientStatus], original: bytes, *, arrival: datetime,
               delayed: bool, is_report: bool, retry_until: datetime | None = None) -> None:
        """Tell ``sender`` about ``recipients``; never about a report (RFC 3464 §2, no loops)."""
        if is_report or not sender or sender == "<>":
            log.info("queue: no report for a message with the null sender (%d recipient(s))", len(recipients))
            return
        hostname = local_helo(self.settings.hostname)
        message = build_report(reporting_mta=hostname, sender=sender, recipients=recipients, original=original,
                               arrival=arrival, delayed=delayed, retry_until=retry_until)
        try:
            self.submit_report(sender, message)
        except MailError as exc:
            log.error("queue: the %s report to <%s> could not be stored: %s",
                      "delay" if delayed else "non-delivery", sender, exc.message)

    def submit_report(self, sender: str, message: bytes) -> None:
        """A local sender gets the report in the mailbox at once; a remote one through the queue."""
        local, _, domain = sender.rpartition("@")
        with self.db.read() as session:
            box = session.scalar(select(Mailbox.id).join(Domain, Domain.id == Mailbox.domain_id)
                                 .where(Domain.name == domain.lower(), Mailbox.name == local.lower()))
            is_local_domain = session.scalar(select(Domain.id).where(Domain.name == domain.lower())) is not None
        if box is not None:
            # A report must arrive even in a full mailbox: the sender needs to know.
            self.store.deliver_many([box], message, check_quota=False)
            log.info("queue: report delivered to <%s>", sender)
        elif is_local_domain:
            log.warning("queue: the sender <%s> has no mailbox here; the report is dropped", sender)
        else:
            self.enqueue("", [(sender, domain.lower())], message, is_report=True)
            self.loop.call_soon_threadsafe(self.wake)

    # -- administration -------------------------------------------------------------------
    def list(self) -> list[dict]:
        """Every queued message, oldest first: ``id`` (a number for winpop), envelope, a summary
        (attempts, next try, last error) and each recipient's state under ``recipient_states``."""
        now = utcnow()
        with self.db.read() as session:
            messages = session.scalars(select(QueuedMessage).order_by(QueuedMessage.id)).all()
            rows = session.scalars(select(QueuedRecipient).order_by(QueuedRecipient.id)).all()
        by_message: dict[int, list[QueuedRecipient]] = {}
        for r in rows:
            by_message.setdefault(r.message_id, []).append(r)
        out = []
        for m in messages:
            members = by_message.get(m.id, [])
            pending = [r for r in members if r.status == PENDING]
            states = [{"address": r.address, "domain": r.domain, "status": r.status, "attempts": r.attempts,
                       "next_attempt": aware(r.next_attempt_at).isoformat(), "last_error": r.last_error,
                       "in_progress": bool(r.claimed_by) and r.claimed_until is not None
                       and aware(r.claimed_until) > now} for r in members]
            out.append({
                "id": m.id, "queue_id": m.queue_id, "sender": m.sender or "<>", "size": m.size,
                "submitted_by": m.submitted_by, "client": m.client, "is_report": m.is_report,
                "created_at": aware(m.created_at).isoformat(),
                "recipients": [r.address for r in pending],
                "attempts": max((r.attempts for r in members), default=0),
                "next_attempt": min((aware(r.next_attempt_at) for r in pending), default=now).isoformat(),
                "last_error": next((r.last_error for r in reversed(members) if r.last_error), ""),
                "recipient_states": states,
            })
        return out

    def _message_id(self, session: Any, ident: int | str) -> int:
        """A queued message by its number or its queue id; NotFound otherwise."""
        if isinstance(ident, int) or str(ident).isdigit():
            found = session.scalar(select(QueuedMessage.id).where(QueuedMessage.id == int(ident)))
        else:
            found = session.scalar(select(QueuedMessage.id).where(QueuedMessage.queue_id == str(ident)))
        if found is None:
            raise NotFound(f"There is no queued message {ident}; list the queue to see the ids.")
        return found

    def retry(self, ident: int | str | None = None) -> int:
        """Make pending recipients (of one message, or all) due now; returns how many."""
        with self.db.write() as session:
            query = update(QueuedRecipient).where(QueuedRecipient.status == PENDING)
            if ident is not None and ident != "":
                query = query.where(QueuedRecipient.message_id == self._message_id(session, ident))
            count = rows_changed(session.execute(query.values(next_attempt_at=utcnow())))
        return count

    def delete(self, ident: int | str) -> int:
        """Delete a queued message without a report; returns 1, or raises NotFound."""
        with self.db.read() as session:
            queue_id = session.scalar(select(QueuedMessage.queue_id)
                                      .where(QueuedMessage.id == self._message_id(session, ident)))
        if queue_id is None or not self.discard(queue_id):
            raise NotFound(f"There is no queued message {ident}; it was just delivered or deleted.")
        log.warning("queue: %s deleted by the administrator", queue_id)
        return 1

    def show(self, ident: int | str) -> dict:
        """One queued message: envelope, states, its headers and the first KB of its body."""
        with self.db.read() as session:
            number = self._message_id(session, ident)
        entry = next((m for m in self.list() if m["id"] == number), None)
        if entry is None:
            raise NotFound(f"The queued message {ident} was just delivered or deleted.")
        try:
            data = self.read(entry["queue_id"])
        except FileNotFoundError:
            raise NotFound(f"The queued message {ident} was just delivered or deleted.") from None
        end = data.find(b"\r\n\r\n")
        headers, body = (data, b"") if end < 0 else (data[:end], data[end + 4:])
        entry["headers"] = headers.decode("utf-8", "replace")
        entry["body_preview"] = body[:PREVIEW_BYTES].decode("utf-8", "replace")
        entry["body_truncated"] = len(body) > PREVIEW_BYTES
        return entry
