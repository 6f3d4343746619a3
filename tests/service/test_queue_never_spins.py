"""The outgoing queue never spins (issue 13): an unexpected exception in a delivery attempt is a
try like any other — counted, backed off, shown as the last error, logged once with a count —
and the sender hears of it after ``queue_lifetime``."""
from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from service.smtp import queue as queue_module
from service.smtp.queue import RepeatedErrors
from tests.service.test_smtp_harness import PASSWORD, SmtpHarness, message, wait_for

MISSING = "No module named 'dns'"


def harness(tmp_path: Path, **settings: Any) -> SmtpHarness:
    a = SmtpHarness(tmp_path / "a", settings={"smtp_routes": "elsewhere.org=127.0.0.1:9", **settings})
    a.add_domain("example.com")
    a.add_mailbox("alice@example.com")
    return a


def submit(a: SmtpHarness, subject: str = "hello") -> float:
    with a.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", ["bob@elsewhere.org"],
                        message(subject=subject, sender="alice@example.com", to="bob@elsewhere.org"))
    return time.monotonic()


class Broken:
    """Stands in for a part of delivery that raises (the missing dnspython of issue 13)."""

    def __init__(self) -> None:
        self.calls = 0

    def resolver(self) -> Any:        # on the event loop, before any DNS
        self.calls += 1
        raise ModuleNotFoundError(MISSING)

    def send(self, *args: Any, **kwargs: Any) -> Any:   # in the worker thread
        self.calls += 1
        raise ModuleNotFoundError(MISSING)


@pytest.mark.parametrize("where", ["resolver", "send"], ids=["on-the-loop", "in-a-thread"])
def test_an_exception_is_a_try_with_back_off(tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str) -> None:
    caplog.set_level(logging.INFO, logger=queue_module.__name__)
    a = harness(tmp_path)
    broken = Broken()
    setattr(a.server.queue.client, where, getattr(broken, where))
    try:
        started = submit(a)
        item = wait_for(lambda: (q := a.queue()) and q[0]["attempts"] >= 3 and q[0], what="three tries")
        elapsed = time.monotonic() - started
        # Back-off at queue_retry_interval = 1 s: tries at 0, 1 and 3 s; a spinning queue makes hundreds.
        assert elapsed >= 2.5, f"three tries in {elapsed:.2f} s"
        assert broken.calls in (item["attempts"], item["attempts"] + 1)
        assert f"ModuleNotFoundError: {MISSING}" in item["last_error"]
        assert item["last_error"].startswith("451 4.3.0")
        state = item["recipient_states"][0]
        assert state["status"] == "pending"
        assert datetime.fromisoformat(item["next_attempt"]) > datetime.now(UTC)
    finally:
        a.close()
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    counted = [r.getMessage() for r in caplog.records if "the same error" in r.getMessage()]
    assert len(counted) == 1 and f"{broken.calls - 1} more time(s)" in counted[0], counted


def test_the_sender_hears_after_the_lifetime(tmp_path: Path) -> None:
    a = harness(tmp_path, queue_lifetime=2)
    a.server.queue.client.send = Broken().send
    try:
        submit(a, subject="doomed")
        got = wait_for(lambda: a.messages("alice@example.com"), what="the non-delivery report")
        report = got[0].decode()
        assert "Undelivered Mail Returned to Sender" in report
        assert "Status: 5.4.7" in report and f"ModuleNotFoundError: {MISSING}" in report
        assert "doomed" in report
        assert a.queue() == []
    finally:
        a.close()


def test_a_failure_while_recording_still_counts(tmp_path: Path) -> None:
    a = harness(tmp_path)
    broken = Broken()
    a.server.queue.client.send = broken.send

    def record(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the record step is broken too")
    a.server.queue.record = record
    try:
        started = submit(a)
        item = wait_for(lambda: (q := a.queue()) and q[0]["attempts"] >= 2 and q[0], what="two tries")
        assert time.monotonic() - started >= 0.9
        assert broken.calls in (item["attempts"], item["attempts"] + 1)
        assert MISSING in item["last_error"]
    finally:
        a.close()


def test_repeated_errors_are_counted_not_repeated(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.repeats")
    errors = RepeatedErrors(logger, interval=3600)
    with caplog.at_level(logging.ERROR, logger="test.repeats"):
        for _ in range(1000):
            errors.report("boom", "delivery failed: %s", "boom")
        errors.report("other", "delivery failed: %s", "other")
        assert [r.getMessage() for r in caplog.records] == ["delivery failed: boom", "delivery failed: other"]
        errors.flush()
    assert [r.getMessage() for r in caplog.records][2].startswith("delivery failed: boom (the same error 999 more")
    assert len(caplog.records) == 3


def test_a_database_that_takes_no_writes_is_logged_without_a_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A full database disk is a state (the disk watch reports it), not a bug: the queue's
    reports of it carry no traceback; any other exception still does."""
    full = sqlite3.connect(tmp_path / "full.db")
    full.execute("PRAGMA max_page_count = 1")   # SQLite's own 'database or disk is full'
    errors = RepeatedErrors(logging.getLogger("test.repeats"), interval=3600)
    with caplog.at_level(logging.ERROR, logger="test.repeats"):
        try:
            full.execute("CREATE TABLE t (x)")
            full.execute("CREATE TABLE u (x)")
        except sqlite3.OperationalError as exc:
            assert "full" in str(exc)
            errors.report("full", "queue runner: %s", exc, exc_info=True)
        try:
            raise RuntimeError("a bug")
        except RuntimeError:
            errors.report("bug", "queue runner: a bug", exc_info=True)
    full.close()
    assert [(r.getMessage(), bool(r.exc_info)) for r in caplog.records] == [
        ("queue runner: database or disk is full", False), ("queue runner: a bug", True)]
