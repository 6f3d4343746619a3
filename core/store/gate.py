"""The store's gate: store operations pass together; a change of the mail root waits for them and runs alone."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from core.errors import Unavailable


def on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (SMTP may deliver on it when it is idle)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Gate:
    """Many operations pass at once; ``alone`` closes the gate, waits for them, and runs by itself."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self._closed = False

    @contextlib.contextmanager
    def passing(self) -> Iterator[None]:
        """Run a store operation; it waits while the mail root changes (an event loop gets a retry)."""
        with self._cond:
            if self._closed and on_event_loop():   # an event loop never waits for the move: a retry
                raise Unavailable("The mail store is moving to another root mail directory; try again shortly.")
            while self._closed:
                self._cond.wait()
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                if not self._busy:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def alone(self, timeout: float) -> Iterator[None]:
        """Run the body with no operation passing; Unavailable if they do not finish in ``timeout``."""
        with self._cond:
            while self._closed:
                self._cond.wait()
            self._closed = True
            if not self._cond.wait_for(lambda: self._busy == 0, timeout):
                self._closed = False
                self._cond.notify_all()
                raise Unavailable("The mail store is busy (a long repair or many deliveries); try again in a minute.")
        try:
            yield
        finally:
            with self._cond:
                self._closed = False
                self._cond.notify_all()
