"""Free space on the disks the service writes to (data directory with the SQLite database and the
logs; the mail root), measured off the event loop every few seconds. ``service.status`` carries
the last measurement, and the console shows a full disk in red with the numbers (issue 14)."""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

INTERVAL = 2.0                # seconds between measurements (a statvfs each: cheap)
FULL_BYTES = 1024 * 1024      # less free than this: full (SQLite and Maildir need room to write)
LOW_FRACTION = 0.05           # less than 5 % free (and under LOW_BYTES): low
LOW_BYTES = 1024 ** 3


@dataclass(frozen=True)
class DiskSpace:
    """One file system the service writes to."""

    what: str          # "data directory and database", "mail root", or both joined
    path: str
    free_bytes: int    # available to the service (statvfs f_bavail)
    total_bytes: int
    state: str         # "ok", "low" or "full"


def measure(places: dict[str, Path]) -> list[DiskSpace]:
    """statvfs each place once per file system (blocking: call it off the event loop)."""
    by_device: dict[int, tuple[list[str], Path, os.statvfs_result]] = {}
    for what, path in places.items():
        try:
            device = os.stat(path).st_dev
            if device in by_device:
                by_device[device][0].append(what)
                continue
            by_device[device] = ([what], path, os.statvfs(path))
        except OSError:
            continue
    result = []
    for names, path, st in by_device.values():
        free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
        if free < FULL_BYTES:
            state = "full"
        elif total and free < total * LOW_FRACTION and free < LOW_BYTES:
            state = "low"
        else:
            state = "ok"
        what = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        result.append(DiskSpace(what, str(path), free, total, state))
    return result


class DiskWatch:
    """Keeps the last measurement; publishes ``service.state`` when a disk's state changes."""

    def __init__(self, places: Callable[[], dict[str, Path]], run: Callable[..., Any],
                 on_change: Callable[[], None]) -> None:
        self._places = places
        self._run = run
        self._on_change = on_change
        self.disks: list[DiskSpace] = []
        self._task: asyncio.Task | None = None

    def snapshot(self) -> list[dict[str, Any]]:
        """The last measurement, for service.status."""
        return [asdict(d) for d in self.disks]

    async def check(self) -> None:
        """Measure now (in a worker thread); tell subscribers if a state moved."""
        disks = await self._run(measure, self._places())
        before = {d.what: d.state for d in self.disks}
        self.disks = disks
        for disk in disks:
            if before.get(disk.what, "ok") != disk.state:
                level = {"full": logging.ERROR, "low": logging.WARNING}.get(disk.state, logging.INFO)
                log.log(level, "disk of the %s (%s): %s, %d MB free of %d MB", disk.what, disk.path, disk.state,
                        disk.free_bytes // 2**20, disk.total_bytes // 2**20)
        if {d.what: d.state for d in disks} != before:
            self._on_change()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="disk-watch")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _watch(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:   # never fatal: the next round tries again
                log.exception("could not measure the free disk space")
            await asyncio.sleep(INTERVAL)
