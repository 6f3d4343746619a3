"""The threads that do the service's blocking work, so the event loop never waits (issue 14):
the store's threads (database, fsync), the logon threads (PAM, LDAP, PBKDF2) and the reader
threads (message files)."""
from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Runs(Protocol):
    """The slice of Workers most parts need: run blocking work off the event loop."""

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class Closable(Protocol):
    """An open file (or a message file wrapping one)."""

    def close(self) -> None: ...


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


class Workers:
    """The thread pools of one service process and the ways onto them from the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, store_threads: int = 32, logon_threads: int = 32,
                 read_spares: int = 7) -> None:
        self.loop = loop
        # Blocking work: database, fsync, file reads. SMTP deliveries take at most half of it.
        self.executor = ThreadPoolExecutor(max_workers=store_threads, thread_name_prefix="store")
        # Logons get threads of their own: PAM takes ~2 s to refuse a password, and a burst of
        # wrong passwords must not starve deliveries and mailbox reads of the store's threads.
        self.auth_executor = ThreadPoolExecutor(max_workers=logon_threads, thread_name_prefix="auth")
        # Message files are opened and read on threads of their own (RETR, TOP): a slow disk then
        # holds at most these, never the event loop nor the store's database work (issue 14).
        self.reads = ReaderPool(spares=read_spares)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking work (database, fsync, PAM, LDAP) off the event loop."""
        return await self.loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def run_auth(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a password check (provider or SASL step: PAM, LDAP, PBKDF2) on the logon threads."""
        return await self.loop.run_in_executor(self.auth_executor, functools.partial(fn, *args, **kwargs))

    def read_file(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """Start a message-file open or read on the reader threads; await the result."""
        return asyncio.wrap_future(self.reads.submit(fn, *args), loop=self.loop)

    def close_file(self, handle: Closable) -> None:
        """Close an open message file on a reader thread, without waiting for it."""
        try:
            self.reads.submit(handle.close)
        except RuntimeError:   # the reader threads are gone (shutdown): close it here
            handle.close()

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

    def shutdown(self) -> None:
        """Stop every pool, dropping queued work (blocking: the store's threads are waited for,
        a PAM delay on a logon thread is not)."""
        self.reads.shutdown(wait=True, cancel_futures=True)
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.auth_executor.shutdown(wait=False, cancel_futures=True)
