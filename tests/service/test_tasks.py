"""service.tasks.cancel_and_wait: the stop of the service's own tasks (listeners, disk watch, history)."""
from __future__ import annotations

import asyncio

from service.tasks import cancel_and_wait


def test_a_task_is_cancelled_and_has_ended_whatever_it_raises_on_the_way_out():
    async def run() -> list[asyncio.Task]:
        async def forever() -> None:
            await asyncio.Event().wait()

        async def fails_when_cancelled() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                raise RuntimeError("cleanup failed") from None

        tasks = [asyncio.create_task(forever()), asyncio.create_task(fails_when_cancelled())]
        await asyncio.sleep(0)   # both are waiting now
        for task in tasks:
            await cancel_and_wait(task)
        await cancel_and_wait(None)
        return tasks

    tasks = asyncio.run(run())
    assert all(task.done() for task in tasks)
    assert tasks[0].cancelled() and isinstance(tasks[1].exception(), RuntimeError)
