"""Service statistics: named counters (sessions, logons, failures, bytes ...) that every part bumps
and ``service.status`` shows."""
from __future__ import annotations

import threading
from collections import Counter


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
