"""Small helpers for the service's own asyncio tasks."""
from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel ``task`` and wait until it has ended; what it raised on the way out is its own affair
    (each task logs its failures), a clean stop is ours. Nothing to do for ``None``."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
