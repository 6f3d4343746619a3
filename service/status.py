"""What ``service.status`` reports: the listeners and their states, the counters, free disk space
and what the mail store could not repair. Published as the ``service.state`` event too."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.ipc.wire import to_wire
from core.store import MailStore
from service.counters import Counters
from service.disk import DiskWatch
from service.listeners import Listener


class ServiceStatus:
    """The service's state as the console's status page and ``winpop stat`` show it."""

    def __init__(self, listeners: Mapping[str, Listener], counters: Counters, disk: DiskWatch,
                 store: MailStore) -> None:
        self.listeners = listeners
        self.counters = counters
        self.disk = disk
        self.store = store

    def report(self) -> dict[str, Any]:
        listeners = [lst.describe() for lst in self.listeners.values()]
        states = {entry["state"] for entry in listeners}
        state = "running" if "running" in states else ("paused" if "paused" in states else "stopped")
        # Free space, measured off the loop every few seconds (service/disk.py): a full disk shows.
        # What the start-up repair (or a read since) could not fix in the mail root: {total, items}.
        return {"state": state, "listeners": listeners, "counters": self.counters.snapshot(),
                "disk": self.disk.snapshot(), "store_problems": to_wire(self.store.problems())}
