"""The per-minute history (service/history.py) the status page charts: counted from real SMTP
deliveries and POP3 logons, rolled over by an injected clock (no test waits a minute), kept across
a real restart with the minutes the service was down as gaps, pruned after a day."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import poplib
import smtplib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from core.db import Database, sqlite_url
from core.ipc.ops import STATS_SERIES
from core.tables import StatsMinute
from service.app import Process, Runtime, ServiceConfig, build
from service.counters import Counters
from service.disk import DiskWatch
from service.history import COUNTED, SERIES, History, minute_of
from service.listeners import ConnectionBudget
from tests.support import db_url_for, fill, free_port, small_tmpfs, unverified_tls

PASSWORD = "Secret-123x"
T0 = 1_800_000_000 // 60 * 60 + 10.0     # ten seconds into a minute


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _admin(runtime: Runtime, op: str, **params: Any) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(runtime.admin_server.path))
    try:
        writer.write(json.dumps({"id": 1, "op": op, "params": params}).encode() + b"\n")
        answer = json.loads(await asyncio.wait_for(reader.readline(), 20))
    finally:
        writer.close()
    assert "result" in answer, answer
    return answer["result"]


async def _started(data_dir: Path, clock: Clock, ports: dict[str, int]) -> Runtime:
    loop = asyncio.get_running_loop()
    config = ServiceConfig(data_dir=data_dir, db_url=db_url_for(data_dir / "pop3svc.db"), bind="127.0.0.1",
                           ports={"pop3": 0, "pop3s": 0, "smtp": 0, "submission": 0, "smtps": 0, **ports})
    process = Process(loop=loop, budget=ConnectionBudget(100), set_log_level=lambda _level: None,
                      request_shutdown=lambda _restart: None, clock=clock)
    runtime = await loop.run_in_executor(None, build, config, process)
    await loop.run_in_executor(None, runtime.prepare)
    await runtime.open_admin()
    runtime.bind()
    await runtime.serve()
    await runtime.disk.check()   # a disk measurement for disk_free_mb
    return runtime


def _send(port: int, n: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
        for i in range(n):
            smtp.sendmail("someone@example.org", ["alice@example.com"],
                          f"From: someone@example.org\r\nSubject: {i}\r\n\r\nHello.\r\n".encode())


def _logons(port: int) -> None:
    good = poplib.POP3("127.0.0.1", port, timeout=20)
    good.stls(context=unverified_tls())
    good.user("alice@example.com")
    good.pass_(PASSWORD)
    good.quit()
    bad = poplib.POP3("127.0.0.1", port, timeout=20)
    bad.stls(context=unverified_tls())
    bad.user("alice@example.com")
    with pytest.raises(poplib.error_proto):
        bad.pass_("wrong-password")
    bad.close()


def test_real_mail_and_logons_show_in_their_minute_and_survive_a_restart_with_a_gap(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ports = {"pop3": free_port(), "smtp": free_port()}
    clock = Clock(T0)
    first = minute_of(T0)

    async def scenario() -> None:
        runtime = await _started(data_dir, clock, ports)
        try:
            await _admin(runtime, "domain.add", name="example.com")
            await _admin(runtime, "mailbox.add", address="alice@example.com", password=PASSWORD)
            await asyncio.to_thread(_send, ports["smtp"], 3)
            await asyncio.to_thread(_logons, ports["pop3"])
            before = await _admin(runtime, "stats.history", minutes=5)
            assert before["end"] == first * 60 and before["interval"] == 60
            assert all(v is None for values in before["series"].values() for v in values)   # nothing full yet

            clock.now += 60    # the minute ends
            after = await _admin(runtime, "stats.history", minutes=5)
            assert after["end"] == (first + 1) * 60
            last = {name: values[-1] for name, values in after["series"].items()}
            assert set(last) == set(SERIES)
            assert last["received"] == 3 and last["delivered"] == 3 and last["sent"] == 0
            assert last["pop3_sessions"] == 2 and last["failed_logons"] == 1
            assert last["queue_size"] == 0 and isinstance(last["disk_free_mb"], int) and last["disk_free_mb"] > 0
            assert after["series"]["received"][:-1] == [None] * 4   # before the service started: gaps

            await asyncio.to_thread(_send, ports["smtp"], 1)   # in minute first+1, written at stop
        finally:
            await runtime.stop()

        clock.now += 3 * 60    # started again in first+4: first+2 and first+3 are gaps
        runtime = await _started(data_dir, clock, ports)
        try:
            clock.now += 60
            shown = await _admin(runtime, "stats.history", minutes=5)
            assert shown["end"] == (first + 5) * 60
            assert shown["series"]["received"] == [3, 1, None, None, 0]
            assert shown["series"]["delivered"] == [3, 1, None, None, 0]
            assert shown["series"]["disk_free_mb"][2:4] == [None, None]
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_the_minutes_parameter_is_checked(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()

    async def scenario() -> None:
        runtime = await _started(data_dir, Clock(T0), {"pop3": free_port()})
        try:
            day = await _admin(runtime, "stats.history", minutes=1440)
            assert all(len(values) == 1440 for values in day["series"].values())
            reader, writer = await asyncio.open_unix_connection(str(runtime.admin_server.path))
            writer.write(json.dumps({"id": 1, "op": "stats.history", "params": {"minutes": 1441}}).encode() + b"\n")
            answer = json.loads(await asyncio.wait_for(reader.readline(), 20))
            writer.close()
            assert answer["error"]["code"] == "invalid" and "1440" in answer["error"]["message"]
        finally:
            await runtime.stop()

    asyncio.run(scenario())


# -- the class alone, on a real database -----------------------------------------------------------
async def _run(fn: Any, *args: Any) -> Any:
    return await asyncio.to_thread(fn, *args)


def _history(db: Database, clock: Clock, counters: Counters, *, node: str = "n1", keep: int = 1440) -> History:
    disk = DiskWatch(lambda: {}, _run, lambda: None)
    return History(db=db, node=node, counters=counters, disk=disk, run=_run, clock=clock, keep=keep)


def _database(tmp_path: Path) -> Database:
    db = Database(db_url_for(tmp_path / "stats.db"))
    db.upgrade()
    return db


def test_old_minutes_are_pruned_from_the_table(tmp_path: Path) -> None:
    db = _database(tmp_path)
    clock, counters = Clock(T0), Counters()
    first = minute_of(T0)
    with db.write() as session:   # a node that left long ago
        session.add(StatsMinute(node="gone", minute=first - 5000, series="received", value=7))

    async def scenario() -> History:
        history = _history(db, clock, counters, keep=3)
        for n in range(6):
            counters.incr("smtp_accepted", n)
            clock.now += 60
            assert await history.roll()
        assert not await history.roll()   # the same minute twice: nothing to do
        return history

    history = asyncio.run(scenario())
    try:
        with db.read() as session:
            minutes = sorted(set(session.scalars(select(StatsMinute.minute))))
        assert minutes == [first + 3, first + 4, first + 5]
        assert history.series(3)["series"]["received"] == [3, 4, 5]
        assert history.series(6)["series"]["received"] == [None, None, None, 3, 4, 5]
    finally:
        db.dispose()


def test_counted_series_are_differences_of_the_counters_and_a_missed_tick_is_a_gap(tmp_path: Path) -> None:
    db = _database(tmp_path)
    clock, counters = Clock(T0), Counters()

    async def scenario() -> History:
        history = _history(db, clock, counters)
        counters.incr("smtp_relayed", 2)
        counters.incr("pop3.logon_failures")
        counters.incr("smtp_logon_failures", 2)
        counters.incr("pop3.sessions", 5)           # sessions open now: not a per-minute count
        clock.now += 60
        await history.roll()
        counters.incr("smtp_relayed")
        clock.now += 3 * 60                          # the timer missed two minutes (a suspended machine)
        await history.roll()
        return history

    history = asyncio.run(scenario())
    try:
        series = history.series(4)["series"]
        assert series["sent"] == [2, 1, None, None]
        assert series["failed_logons"] == [3, 0, None, None]
        assert series["disk_free_mb"] == [None] * 4   # no measurement, no made-up number
        assert set(COUNTED) | {"queue_size", "disk_free_mb"} == set(series)
        reloaded = _history(db, clock, Counters())   # a restart: read from the table
        assert reloaded.series(4) == history.series(4)
        assert _history(db, clock, Counters(), node="other").series(4)["series"]["sent"] == [None] * 4
    finally:
        db.dispose()


# -- winpop stats, against a real service process ------------------------------------------------
def test_winpop_stats_prints_the_op_result_as_json_and_a_table_as_text(service) -> None:
    shown = service.winpop("stats", "--json", check=True)
    result = json.loads(shown.stdout)
    assert result["interval"] == 60 and result["end"] % 60 == 0
    assert list(result["series"]) == list(STATS_SERIES)
    assert all(len(values) == 60 for values in result["series"].values())
    day = json.loads(service.winpop("Stats", "1440", "--json", check=True).stdout)
    assert all(len(values) == 1440 for values in day["series"].values())
    text = service.winpop("stats", check=True).stdout
    assert text.startswith("The last hour, to ")
    for spec in STATS_SERIES.values():
        assert spec.label in text
    refused = service.winpop("stats", "1441")
    assert refused.returncode == 1 and "1 to 1440" in refused.stderr


def test_the_history_keeps_exactly_the_op_tables_series() -> None:
    assert SERIES == tuple(STATS_SERIES)
    assert all(spec.counted == (name in COUNTED) for name, spec in STATS_SERIES.items())


def test_a_restart_within_a_minute_adds_to_what_the_stop_wrote(tmp_path: Path) -> None:
    db = _database(tmp_path)
    clock = Clock(T0)

    async def scenario() -> History:
        before = Counters()
        stopping = _history(db, clock, before)
        before.incr("smtp_accepted", 2)
        await stopping.stop()                 # the minute so far: 2
        clock.now += 20                       # started again in the same minute
        after = Counters()
        restarted = _history(db, clock, after)
        after.incr("smtp_accepted", 3)
        clock.now += 60
        await restarted.roll()
        return restarted

    history = asyncio.run(scenario())
    try:
        assert history.series(2)["series"]["received"] == [None, 5]
        with db.read() as session:
            stored = session.scalar(select(StatsMinute.value).where(StatsMinute.series == "received"))
        assert stored == 5
    finally:
        db.dispose()


def test_two_processes_of_one_node_add_their_counts_and_share_the_samples(tmp_path: Path) -> None:
    """Worker processes sharing the listeners (DESIGN: several processes, one node): each has
    its own counters and History over its own connection pool. The minute's counts add up in
    the table, the samples are not doubled, and either process answers with the node's sums."""
    first_db = _database(tmp_path)
    second_db = Database(first_db.engine.url.render_as_string(hide_password=False))   # another pool
    clock = Clock(T0)
    one, two = Counters(), Counters()

    async def scenario() -> tuple[History, History]:
        a, b = _history(first_db, clock, one), _history(second_db, clock, two)
        one.incr("smtp_accepted", 2)
        two.incr("smtp_accepted", 5)
        one.incr("pop3.sessions_total")
        clock.now += 60
        assert await a.roll() and await b.roll()
        two.incr("smtp_relayed", 4)
        await b.stop()                           # one process stops within the next minute
        one.incr("smtp_relayed", 1)
        clock.now += 60
        assert await a.roll()
        return a, b

    a, b = asyncio.run(scenario())
    try:
        for history in (a, b):
            series = history.series(2)["series"]
            assert series["received"] == [7, 0]
            assert series["pop3_sessions"] == [1, 0]
            assert series["sent"] == [0, 5]
            assert series["queue_size"] == [0, 0]   # measured by both, stored once
        with first_db.read() as session:
            rows = session.execute(select(func.count()).select_from(StatsMinute)).scalar()
        assert rows == 2 * (len(COUNTED) + 1)        # one row per minute and series (no disk sample here)
    finally:
        second_db.dispose()
        first_db.dispose()


def test_a_full_database_disk_keeps_the_minutes_in_memory_and_writes_them_when_there_is_room(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The history's write at a minute's end on a really full disk (a small tmpfs, SQLite): one
    warning, no traceback, the charts still have every minute, and the table gets them all once
    there is room again (CI found a traceback here, in the full-disk test, when a minute ended)."""
    with small_tmpfs(tmp_path / "disk") as mount:
        db = Database(sqlite_url(mount / "stats.db"))
        db.upgrade()
        clock, counters = Clock(T0), Counters()
        first = minute_of(T0)

        def stored() -> dict[int, int]:
            with db.read() as session:
                return dict(session.execute(select(StatsMinute.minute, StatsMinute.value)
                                            .where(StatsMinute.series == "received")).all())

        async def minute(history: History, received: int) -> None:
            counters.incr("smtp_accepted", received)
            clock.now += 60
            assert await history.roll()

        try:
            history = _history(db, clock, counters)
            asyncio.run(minute(history, 1))
            assert stored() == {first: 1}
            with contextlib.closing(sqlite3.connect(mount / "stats.db")) as conn:   # an empty WAL
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler = fill(mount)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="service.history"):
                asyncio.run(minute(history, 2))
                asyncio.run(minute(history, 3))
                full = [r for r in caplog.records if r.name == "service.history"]
                assert [(r.levelno, r.exc_info) for r in full] == [(logging.WARNING, None)], full
                assert "kept in memory" in full[0].getMessage() and "disk is full" in full[0].getMessage()
                assert stored() == {first: 1}
                assert history.series(3)["series"]["received"] == [1, 2, 3]

                filler.unlink()
                caplog.clear()
                asyncio.run(minute(history, 4))
                assert stored() == {first: 1, first + 1: 2, first + 2: 3, first + 3: 4}
                assert [r.getMessage() for r in caplog.records if r.name == "service.history"] == [
                    "statistics of 3 minutes kept in memory are written to the database again"]
        finally:
            db.dispose()
