"""What every part of the running service shares: database, store, auth, settings, TLS, counters,
events. Protocol servers receive one ``ServiceContext``; nothing else is global."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from core.db import Database
from core.catalog import SETTINGS
from core.settings import Settings
from core.store import MailStore
from service.listeners import Limits

log = logging.getLogger(__name__)
T = TypeVar("T")
VERSION = "0.1.0"


class Counters:
    """Service statistics (sessions, logons, failures, bytes ...); safe to bump from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


class EventBus:
    """Change events for admin-channel subscribers; ``publish`` is safe from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: list[Callable[[str, Any], None]] = []

    def subscribe(self, callback: Callable[[str, Any], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def publish(self, name: str, data: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._dispatch(name, data)
        else:
            self._loop.call_soon_threadsafe(self._dispatch, name, data)

    def _dispatch(self, name: str, data: Any) -> None:
        for callback in list(self._subscribers):
            try:
                callback(name, data)
            except Exception:  # a broken subscriber must not stop the others
                log.exception("event subscriber failed")


class ReaderPool:
    """The threads that open and read message files (issue 14). One of them, the lane, takes all
    the work while it keeps up; the spares take new work only while the lane has made no progress
    for STUCK_AFTER (a slow disk), so one stuck read never holds the others. Several reader threads
    at once take turns at the GIL with each other and with the loop at every system call, a
    context switch each: with 8 busy, POP3 lost 30 % of its throughput (docs/BENCHMARKS.md)."""

    STUCK_AFTER = 0.1   # seconds without a started or finished read: the lane is stuck

    def __init__(self, spares: int) -> None:
        self.lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read")
        self.spares = ThreadPoolExecutor(max_workers=spares, thread_name_prefix="read-spare")
        self._submitted = 0    # work given to the lane (written by the submitter, the event loop)
        self._finished = 0     # work the lane finished (written by the lane's thread)
        self._progress = 0.0   # when the lane last started or finished work, or was given it idle

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Start ``fn(*args)`` on the lane, or on a spare while the lane is stuck. Call it on the loop."""
        if self._submitted != self._finished and time.monotonic() - self._progress > self.STUCK_AFTER:
            return self.spares.submit(fn, *args)
        if self._submitted == self._finished:
            self._progress = time.monotonic()
        self._submitted += 1
        try:
            return self.lane.submit(self._run, fn, args)
        except BaseException:
            self._submitted -= 1
            raise

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        self._progress = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._finished += 1
            self._progress = time.monotonic()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for pool in (self.lane, self.spares):
            pool.shutdown(wait=wait, cancel_futures=cancel_futures)


class ServiceContext:
    """Shared state of one running service process."""

    def __init__(self, *, data_dir: Path, db: Database, store: MailStore, loop: asyncio.AbstractEventLoop,
                 hostname: str, settings: dict[str, Any] | None = None) -> None:
        self.data_dir = data_dir
        self.db = db
        self.store = store
        self.loop = loop
        self.hostname = hostname
        self.stats = Counters()
        self.events = EventBus(loop)
        # Blocking work: database, fsync, file reads. SMTP deliveries take at most half of it.
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="store")
        # Message files are opened and read on threads of their own (RETR, TOP): a slow disk then
        # holds at most these, never the event loop nor the store's database work (issue 14).
        self.reads = ReaderPool(spares=7)
        self.auth: Any = None          # the auth provider (core.auth), set by the daemon
        self.auth_methods: Any = None  # service.auth_methods.AuthMethods: builds and switches ``auth``
        # Logons get threads of their own: PAM takes ~2 s to refuse a password, and a burst of
        # wrong passwords must not starve deliveries and mailbox reads of the store's threads.
        self.auth_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="auth")
        self.tls: Any = None           # service.tls.TlsMaterial
        self.throttle: Any = None      # service.throttle.LoginThrottle (POP3 issue)
        self.admin: Any = None         # core.admin.Admin
        self.smtp: Any = None          # service.smtp.server.SmtpServer (SMTP issue)
        self.cluster: Any = None       # service.cluster.EventRelay on PostgreSQL (issue 8)
        self.version = VERSION
        self.listeners: dict[str, Any] = {}
        # Set by the daemon: what to do when settings change, and how to act on listeners.
        self.on_settings_changed: Callable[[], None] = lambda: None
        self.controller: Callable[[str, str], Any] | None = None
        self._settings: dict[str, Any] = dict(settings) if settings is not None else {}
        self._reload_pending = False
        if settings is None:
            self.reload_settings()

    def reload_settings(self) -> None:
        """Read every setting from the database into the cache. Blocking: call it off the loop."""
        with self.db.read() as session:
            self._settings = Settings.get_all(session)

    def setting(self, name: str) -> Any:
        """A server property, from the cache refreshed (off the loop) after every change. Never
        reads the database (issue 14): a setting registered after the cache was filled (a module
        imported later) has its default until a reload, started here in a thread, brings its value."""
        try:
            return self._settings[name]
        except KeyError:
            spec = SETTINGS.get(name)
            if spec is None:
                raise
            log.warning("setting %s was registered after the settings were loaded; reloading them", name)
            self._reload_soon()
            return spec.default

    def _reload_soon(self) -> None:
        """Reload the settings cache on a store thread, once at a time, and apply what changed."""
        if self._reload_pending:
            return
        self._reload_pending = True

        def done(_future: Any) -> None:
            self._reload_pending = False

        def reload() -> None:
            self.reload_settings()
            self.apply_settings()   # in this thread, as after `winpop set` (service/ipc/handlers.py)

        with contextlib.suppress(RuntimeError):   # shutting down: nothing left to apply it to
            self.executor.submit(reload).add_done_callback(done)
            return
        self._reload_pending = False

    def apply_settings(self) -> None:
        self.on_settings_changed()

    async def control(self, action: str, listener: str = "") -> None:
        """Start, stop, pause or resume listeners (service.control)."""
        if self.controller is None:
            raise RuntimeError("no controller")
        await self.controller(action, listener)

    def limits(self) -> Limits:
        return Limits(total=int(self._settings["max_connections"]),
                      per_address=int(self._settings["max_connections_per_ip"]))

    async def run_auth(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a password check (provider or SASL step: PAM, LDAP, PBKDF2) on the logon threads."""
        return await self.loop.run_in_executor(self.auth_executor, functools.partial(fn, *args, **kwargs))

    def start_threads(self) -> None:
        """Start every worker thread now (blocking: call it off the loop). A pool starts its threads
        one by one as work comes, and ``Thread.start`` waits for the new thread to run: on a busy
        machine that wait, tens of ms, would fall on the event loop that submitted the work."""
        for pool in (self.executor, self.auth_executor, self.reads.lane, self.reads.spares):
            size = pool._max_workers
            barrier = threading.Barrier(size + 1)
            try:
                for _ in range(size):
                    pool.submit(barrier.wait, 10)
                barrier.wait(10)
            except (threading.BrokenBarrierError, RuntimeError):   # shutting down, or a slow start
                barrier.abort()

    def read_file(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """Start a message-file open or read on the reader threads; await the result."""
        return asyncio.wrap_future(self.reads.submit(fn, *args), loop=self.loop)

    def close_file(self, handle: Any) -> None:
        """Close an open message file on a reader thread, without waiting for it."""
        try:
            self.reads.submit(handle.close)
        except RuntimeError:   # the reader threads are gone (shutdown): close it here
            handle.close()

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (database, fsync, PAM, LDAP) off the event loop."""
        return await self.loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
