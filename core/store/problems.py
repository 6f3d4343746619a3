"""The store's problem list: what the last repair (and reads since) could not fix, for the status page."""
from __future__ import annotations

import dataclasses
import os
import threading

from core.store.maildir import shown_path

MAX_PROBLEMS = 200         # problems kept for the status page; the rest are counted
LOGGED_PROBLEMS = 50       # problems of one repair logged one by one; the rest in one line


@dataclasses.dataclass(frozen=True)
class StoreProblem:
    """Something in the mail root the store could not repair: where, and why, in words."""

    path: str
    problem: str



@dataclasses.dataclass(frozen=True)
class StoreProblems:
    """The problem list as handed out: every problem counted, at most MAX_PROBLEMS listed."""

    total: int
    items: tuple[StoreProblem, ...]


class ProblemList:
    """Problems by path (the newest text wins), at most MAX_PROBLEMS kept, all of them counted."""

    def __init__(self) -> None:
        self._items: dict[str, StoreProblem] = {}
        self._total = 0
        self._lock = threading.Lock()

    def note(self, path: str | os.PathLike[str], problem: str) -> bool:
        """Remember something the store could not fix; True if it is new (worth a log line)."""
        shown = shown_path(path)
        with self._lock:
            if self._items.get(shown) == StoreProblem(shown, problem):
                return False
            if shown not in self._items:
                self._total += 1
                if len(self._items) >= MAX_PROBLEMS:
                    return True
            self._items[shown] = StoreProblem(shown, problem)
            return True

    def clear(self) -> None:
        """Forget every problem (a new repair, or another mail root)."""
        with self._lock:
            self._items.clear()
            self._total = 0

    def report(self) -> StoreProblems:
        """The problems now, in the order they were first seen."""
        with self._lock:
            return StoreProblems(total=self._total, items=tuple(self._items.values()))
