"""The ban cache of one node (service/throttle.py): a ban lifted, here or on another node, while
the periodic refresh is reading the ban list in a worker must not come back when that (older)
list arrives. Seen once in a PostgreSQL CI run of test_bans_made_on_one_node_hold_on_the_other:
the lift was relayed to node A in the middle of A's refresh, and A turned the address away for
another refresh period although its ban list was empty.
"""
from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from service import throttle as throttle_module
from service.throttle import LoginThrottle
from tests.service.test_pop3_support import Pop3Harness, pop3  # noqa: F401
from tests.support import wait_for


class HeldWorkers:
    """Workers.run whose result is handed back only when the test says so: the refresh's read of the
    ban list is 'in a worker' for as long as the test needs to lift a ban meanwhile."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.started = threading.Event()
        self.release: asyncio.Event | None = None

    async def run(self, fn: Any, *args: Any) -> Any:
        result = await self.real.run(fn, *args)   # the list as it is now: read before the lift
        self.release = asyncio.Event()
        self.started.set()
        await self.release.wait()
        return result


def _ban_in_database(pop3: Pop3Harness, value: str) -> None:  # noqa: F811
    with pop3.db.write() as session:
        session.add(throttle_module.Ban(kind="address", value=value, reason="3 failed logons", failures=3,
                                        expires_at=datetime.now(UTC) + timedelta(hours=1)))


def _refresh_with_a_lift_in_the_middle(pop3: Pop3Harness, lift: Any) -> LoginThrottle:  # noqa: F811
    _ban_in_database(pop3, "198.51.100.7")
    workers = HeldWorkers(pop3.workers)
    throttle = pop3.in_loop(lambda: LoginThrottle(pop3.db, pop3.settings, workers, pop3.counters, pop3.events))
    assert pop3.in_loop(lambda: throttle.is_banned("198.51.100.7"))
    throttle._refreshed = 0.0                      # the refresh is due: the next question starts it
    pop3.in_loop(lambda: throttle.is_banned("198.51.100.7"))
    assert workers.started.wait(10), "the refresh did not start"
    lift(throttle)                                   # while the (older) list is on its way back
    pop3.in_loop(lambda: workers.release.set())
    wait_for(lambda: not pop3.in_loop(lambda: throttle._refreshing), what="the refresh to finish")
    return throttle


def test_a_ban_lifted_on_another_node_during_a_refresh_stays_lifted(pop3: Pop3Harness) -> None:  # noqa: F811
    def relayed_lift(throttle: LoginThrottle) -> None:
        with pop3.db.write() as session:      # the other node deleted the row, then relayed the lift
            session.query(throttle_module.Ban).delete()
        pop3.in_loop(lambda: throttle.remote_lift({"value": "198.51.100.7"}))

    throttle = _refresh_with_a_lift_in_the_middle(pop3, relayed_lift)
    assert not pop3.in_loop(lambda: throttle.is_banned("198.51.100.7"))


def test_a_ban_lifted_here_during_a_refresh_stays_lifted(pop3: Pop3Harness) -> None:  # noqa: F811
    throttle = _refresh_with_a_lift_in_the_middle(pop3, lambda throttle: throttle.lift("198.51.100.7"))
    assert not pop3.in_loop(lambda: throttle.is_banned("198.51.100.7"))
