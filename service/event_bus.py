"""Change events of one service process (domain added, mailbox locked, counters moved, settings
changed ...): published by any part, from any thread; received on the event loop by the admin
channel's subscribers and the parts that cache what an event invalidates."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from core.ipc.wire import to_wire

log = logging.getLogger(__name__)

Subscriber = Callable[[str, Any], None]


class Publisher(Protocol):
    """The slice of the EventBus a part needs to announce a change."""

    def publish(self, name: str, data: Any) -> None: ...


class EventBus:
    """Change events for admin-channel subscribers; ``publish`` is safe from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(name, data)`` on the loop for every event; returns the unsubscriber."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def publish(self, name: str, data: Any) -> None:
        """Send an event to every subscriber; a value of core.model goes out as its JSON form
        (core.ipc.wire), which is what admin connections, other nodes and listeners get."""
        data = to_wire(data)
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
