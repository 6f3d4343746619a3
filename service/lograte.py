"""Log lines that clients can cause, at a bounded rate: a flood of resets, refusals or failed
handshakes gives a few lines and then one line with a count per interval, never a line (or a
traceback) per event, so client behaviour cannot drive the log's rotation by size.

Two tools: ``EventLog`` for call sites that know an event is client-triggered (a small budget per
kind of event), and ``FloodFilter``, a safety net on the service's log handlers that holds every
message template to a budget per interval and keeps tracebacks for the first few only.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

INTERVAL = 60.0          # seconds: the window the budgets count in
EVENT_BURST = 5          # lines of one kind of client-triggered event per window
TEMPLATE_BURST = 600     # lines of one message template per window (INFO and below)
CLIENT_BURST = 60        # lines of one template per window for one client (records with CLIENT set)
WARNING_BURST = 30       # lines of one template per window (WARNING and above)
TRACEBACKS = 3           # records of one template per window that keep their traceback
MAX_TEMPLATES = 10_000   # windows kept at once (messages formatted before logging are each their own)
SUMMARY = "rate_summary"  # attribute set on a summary record: it passes every filter
CLIENT = "client_key"     # attribute (extra=) naming the client a record is about (service.listeners.client_key)
_Key = tuple[str, int, str, str]   # logger, level, template, client ("" for all clients)
_LIMITERS: weakref.WeakSet[Any] = weakref.WeakSet()   # for flush() at shutdown


@dataclass
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0
    tracebacks: int = 0
    scheduled: bool = False
    sample: str = field(default="")


def _schedule(delay: float, callback: Any) -> bool:
    """Call ``callback`` after ``delay`` on the running event loop, if this thread has one."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    loop.call_later(delay, callback)
    return True


class EventLog:
    """One logger's client-triggered events: ``burst`` lines per kind and interval, then a count."""

    def __init__(self, logger: logging.Logger, *, interval: float = INTERVAL, burst: int = EVENT_BURST) -> None:
        self.logger = logger
        self.interval = interval
        self.burst = burst
        self._windows: dict[str, _Window] = {}
        self._levels: dict[str, int] = {}
        self._lock = threading.RLock()   # a summary is logged while it is held
        _LIMITERS.add(self)

    def flush(self) -> None:
        """Write the counts of the current windows now (at shutdown)."""
        with self._lock:
            windows, self._windows = self._windows, {}
            levels, self._levels = self._levels, {}
            for kind, window in windows.items():
                if window.suppressed:
                    self._summarise(kind, levels.get(kind, logging.INFO), window)

    def __call__(self, kind: str, level: int, message: str, *args: Any, exc_info: Any = None) -> None:
        """Log ``message`` unless this kind of event has used its budget in the current window."""
        now = time.monotonic()
        with self._lock:
            self._levels[kind] = level
            window = self._windows.get(kind)
            if window is None or now - window.start >= self.interval:
                if window is not None and window.suppressed:
                    self._summarise(kind, level, window)
                if len(self._windows) >= MAX_TEMPLATES:   # kinds that carry data: keep memory bounded
                    self.flush()
                window = self._windows[kind] = _Window(now)
            if window.passed >= self.burst:
                window.suppressed += 1
                try:
                    window.sample = message % args if args else message
                except (TypeError, ValueError):
                    window.sample = message
                if not window.scheduled:
                    window.scheduled = _schedule(window.start + self.interval - now,
                                                 lambda: self._expire(kind, level, window))
                return
            window.passed += 1
        self.logger.log(level, message, *args, exc_info=exc_info)

    def _expire(self, kind: str, level: int, window: _Window) -> None:
        with self._lock:
            if self._windows.get(kind) is window:
                del self._windows[kind]
            if not window.suppressed:
                return
            self._summarise(kind, level, window)

    def _summarise(self, kind: str, level: int, window: _Window) -> None:
        self.logger.log(level, "%d more %s event(s) in %.0f s not logged one by one; the last: %s",
                        window.suppressed, kind, self.interval, window.sample, extra={SUMMARY: True})
        window.suppressed = 0


class FloodFilter(logging.Filter):
    """A handler filter: at most a budget of records per message template and interval, and a
    smaller one per client for records that name theirs (``extra={CLIENT: key}``); the rest are
    counted and summarised once the interval is over. Tracebacks only for the first few.

    One instance may sit on several handlers: the verdict is taken once per record."""

    def __init__(self, *, interval: float = INTERVAL, burst: int = TEMPLATE_BURST,
                 warning_burst: int = WARNING_BURST, tracebacks: int = TRACEBACKS) -> None:
        super().__init__()
        self.interval = interval
        self.burst = burst
        self.warning_burst = warning_burst
        self.tracebacks = tracebacks
        self._windows: dict[_Key, _Window] = {}
        self._lock = threading.Lock()
        _LIMITERS.add(self)

    def flush(self) -> None:
        """Write the counts of the current windows now (at shutdown)."""
        with self._lock:
            windows, self._windows = self._windows, {}
        for key, window in windows.items():
            if window.suppressed:
                self._summarise(key, window)

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = record.__dict__.get("_flood_verdict")
        if verdict is None:
            verdict = record._flood_verdict = self._decide(record)
        return verdict

    def _decide(self, record: logging.LogRecord) -> bool:
        if getattr(record, SUMMARY, False):
            return True
        now = time.monotonic()
        template = (record.name, record.levelno, str(record.msg)[:200])
        warning = record.levelno >= logging.WARNING
        client = str(getattr(record, CLIENT, "") or "")
        due: list[tuple[_Key, _Window]] = []
        with self._lock:
            # A client's own budget first (one flooding address does not use up everyone's), then
            # the template's over all clients.
            keep = ((not client or self._take((*template, client), CLIENT_BURST, now, due))
                    and self._take((*template, ""), self.warning_burst if warning else self.burst, now, due))
            if keep and record.exc_info:
                window = self._windows[(*template, "")]
                window.tracebacks += 1
                if window.tracebacks > self.tracebacks:   # the message stays, the traceback goes
                    record.exc_info = None
                    record.exc_text = None
                    record.msg = f"{record.msg} (traceback as logged before)"
        for old_key, old in due:
            self._summarise(old_key, old)
        return keep

    def _take(self, key: _Key, budget: int, now: float, due: list[tuple[_Key, _Window]]) -> bool:
        """One record against one window's budget (the lock is held); False if over it."""
        window = self._windows.get(key)
        if window is None or now - window.start >= self.interval:
            if window is not None and window.suppressed:
                due.append((key, window))
            window = self._windows[key] = _Window(now)
            # Many distinct messages or clients: forget the idle windows, then the oldest.
            if len(self._windows) > MAX_TEMPLATES:
                stale = [k for k, w in self._windows.items() if now - w.start >= self.interval]
                if len(self._windows) - len(stale) > MAX_TEMPLATES // 2:
                    stale = sorted(self._windows, key=lambda k: self._windows[k].start)[: len(self._windows) // 2]
                for old in stale:
                    w = self._windows.pop(old)
                    if w.suppressed and old != key:
                        due.append((old, w))
                window = self._windows[key] = self._windows.get(key) or _Window(now)
        if window.passed >= budget:
            window.suppressed += 1
            if not window.scheduled:
                window.scheduled = _schedule(window.start + self.interval - now, lambda: self._expire(key, window))
            return False
        window.passed += 1
        return True

    def _expire(self, key: _Key, window: _Window) -> None:
        with self._lock:
            if self._windows.get(key) is window:
                del self._windows[key]
            suppressed, window.suppressed = window.suppressed, 0
        if suppressed:
            window.suppressed = suppressed
            self._summarise(key, window)

    def _summarise(self, key: _Key, window: _Window) -> None:
        name, level, template, client = key
        logging.getLogger(name).log(level, "%d more log lines like \"%s\"%s in %.0f s were not written",
                                    window.suppressed, template, f" for {client}" if client else "",
                                    self.interval, extra={SUMMARY: True})
        window.suppressed = 0


_loop_events = EventLog(logging.getLogger("asyncio"))


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler for errors nobody caught (a failed callback, an SSL transport's
    fatal error): each kind at most a few times per interval, with its traceback, then a count.
    asyncio's default handler writes the whole context, object reprs included, for every event."""
    message = str(context.get("message") or "Unhandled exception in the event loop")
    exc = context.get("exception")
    detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else ""
    exc_info = (type(exc), exc, exc.__traceback__) if isinstance(exc, BaseException) else None
    _loop_events(message[:100], logging.ERROR, "%s %s", message, detail, exc_info=exc_info)


def flush() -> None:
    """Write every pending count (the service is stopping: the interval will not end)."""
    for limiter in list(_LIMITERS):
        limiter.flush()
