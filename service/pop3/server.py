"""The POP3 server: builds sessions for the pop3 and pop3s listeners, words their refusals, and
keeps this node's mailbox lock leases alive.

service/app.py wires it up::

    srv = Pop3Server(loop=..., store=..., auth=..., tls=..., throttle=..., locks=..., settings=...,
                     counters=..., workers=...)
    Listener("pop3", "pop3", host, port, srv.protocol_factory(implicit_tls=False), refusal=srv.refusal, ...)
    Listener("pop3s", "pop3", host, port, srv.protocol_factory(implicit_tls=True), refusal=srv.refusal,
             ssl_context=tls.context, ...)
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from core.errors import DiskFull, database_error
from core.store import MailStore
from core.tables import SessionLock
from service.auth_methods import AuthSource
from service.counters import Counters
from service.listeners import Refusal
from service.live_settings import LiveSettings
from service.pop3 import wire
from service.pop3.lock import MailboxLocks
from service.pop3.session import Pop3Session
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

log = logging.getLogger("service.pop3")

REFUSALS = {
    Refusal.PAUSED: wire.err("The POP3 service is paused; try again later.", "SYS/TEMP"),
    Refusal.BUSY: wire.err("The server has too many connections; try again later.", "SYS/TEMP"),
    Refusal.BUSY_ADDRESS: wire.err("Too many connections from your address; close some and try again.", "SYS/TEMP"),
    Refusal.BANNED: wire.err("Too many failed logons from your address; try again later.", "AUTH"),
}


class Pop3Server:
    """What the POP3 sessions of both listeners share: the store, the auth provider, TLS, the
    logon throttle, the mailbox session locks, the settings, the counters and the worker threads."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, store: MailStore, auth: AuthSource, tls: TlsMaterial,
                 throttle: LoginThrottle, locks: MailboxLocks, settings: LiveSettings, counters: Counters,
                 workers: Workers) -> None:
        self.loop = loop
        self.store = store
        self.db = store.db
        self.auth = auth
        self.tls = tls
        self.throttle = throttle
        self.locks = locks
        self.settings = settings
        self.counters = counters
        self.workers = workers
        self.sessions: set[Pop3Session] = set()
        self._ids = itertools.count(1)
        self._renewer: asyncio.Task | None = None
        self._held = 0
        self._tasks: set[asyncio.Task] = set()
        self._memory_locks: dict[int, str] = {}   # mailbox id -> holder, while the database's disk is full
        self._undeleted: dict[int, str] = {}      # lock rows given back that could not be deleted

    def protocol_factory(self, *, implicit_tls: bool) -> Callable[[], asyncio.BaseProtocol]:
        """A factory of sessions for one listener (port 110 with STLS, or 995 with TLS from the start)."""
        return lambda: Pop3Session(self, implicit_tls=implicit_tls)

    def refusal(self, reason: Refusal) -> bytes:
        """What a refused connection is told (RFC 2449 response codes)."""
        return REFUSALS.get(reason, REFUSALS[Refusal.BUSY])

    def next_session_id(self) -> int:
        return next(self._ids)

    # -- session bookkeeping --------------------------------------------------------------
    def session_started(self, session: Pop3Session, task: asyncio.Task) -> None:
        self.sessions.add(session)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.counters.incr("pop3.sessions")
        self.counters.incr("pop3.sessions_total")

    def session_lost(self, session: Pop3Session) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.counters.incr("pop3.sessions", -1)

    # -- mailbox locks --------------------------------------------------------------------
    async def acquire_lock(self, mailbox_id: int, holder: str) -> bool:
        """Take the mailbox's session lock (a database row). When the database's disk is full on
        SQLite (one service, this process), the lock is kept in memory instead, so users can still
        log on, read and delete their mail to make room (issue 14)."""
        if mailbox_id in self._memory_locks:
            return False
        try:
            acquired = await self.workers.run(self._acquire, mailbox_id, holder)
        except Exception as exc:
            if not (self.db.is_sqlite and isinstance(database_error(exc), DiskFull)):
                raise
            acquired = await self.workers.run(self._acquire_in_memory, mailbox_id, holder)
            if not acquired or mailbox_id in self._memory_locks:   # another logon got there during the read
                return False
            log.warning("the database's disk is full: the session lock of mailbox %s is kept in memory", mailbox_id)
            self._memory_locks[mailbox_id] = holder
            return True
        if acquired and mailbox_id in self._memory_locks:   # taken in memory while this one waited
            with contextlib.suppress(Exception):
                await self.workers.run(self.locks.release, mailbox_id, holder)
            return False
        if acquired:
            self._held += 1
            if self._renewer is None or self._renewer.done():
                self._renewer = self.loop.create_task(self._renew_leases(), name="pop3-lock-leases")
        return acquired

    def _acquire(self, mailbox_id: int, holder: str) -> bool:
        """In a worker thread: delete rows this node gave back but could not delete, then lock."""
        for box, old in list(self._undeleted.items()):
            try:
                self.locks.release(box, old)
                self._undeleted.pop(box, None)
            except Exception:
                if box == mailbox_id:   # its dead row would say [IN-USE]: the caller decides
                    raise
        return self.locks.acquire(mailbox_id, holder)

    def _acquire_in_memory(self, mailbox_id: int, holder: str) -> bool:
        """In a worker thread, the database being read-only for want of space: free unless a live
        session holds a lock row (rows this node could not delete are not live)."""
        now = datetime.now(UTC)
        with self.db.read() as session:
            row = session.get(SessionLock, mailbox_id)
            if row is None or self._undeleted.get(mailbox_id) == row.holder:
                return True
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
            return expires <= now or self.locks._stale(row.holder)

    async def release_lock(self, mailbox_id: int, holder: str) -> None:
        if self._memory_locks.get(mailbox_id) == holder:
            del self._memory_locks[mailbox_id]
            return
        self._held = max(0, self._held - 1)
        try:
            await self.workers.run(self.locks.release, mailbox_id, holder)
        except Exception as exc:  # the row is dead: the next logon ignores it and deletes it
            self._undeleted[mailbox_id] = holder
            refusal = database_error(exc)
            if refusal is None:
                log.exception("could not release the session lock of mailbox %s", mailbox_id)
            else:
                log.warning("could not release the session lock of mailbox %s: %s", mailbox_id, refusal.message)

    async def _renew_leases(self) -> None:
        """Extend this node's leases at a third of their length while any is held."""
        while self._held > 0:
            await asyncio.sleep(self.locks.lease_seconds / 3)
            try:
                await self.workers.run(self.locks.renew)
            except Exception as exc:
                refusal = database_error(exc)
                if refusal is None:
                    log.exception("could not renew the POP3 session locks")
                else:   # a full disk: one line, not a traceback every lease
                    log.warning("could not renew the POP3 session locks: %s", refusal.message)

    async def close(self, timeout: float = 10.0) -> None:
        """After the listeners have stopped: let the sessions finish (they give their mailbox
        locks back), stop renewing, and drop whatever lock of this node is left."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._renewer
            self._renewer = None
        with contextlib.suppress(Exception):
            await self.workers.run(self.locks.release_all)
