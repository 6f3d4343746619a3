"""``affected_rows``: how many rows a bulk UPDATE or DELETE through the ORM session matched (the
count the token, ban and session-lock code reports and decides on)."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update

from core.db import affected_rows
from core.tables import Ban


def _ban(value: str) -> Ban:
    return Ban(kind="address", value=value, expires_at=datetime.now(UTC) + timedelta(hours=1))


def test_counts_the_rows_an_update_and_a_delete_matched(db):
    with db.write() as session:
        session.add_all([_ban("192.0.2.1"), _ban("192.0.2.2"), _ban("192.0.2.3")])
    with db.write() as session:
        changed = affected_rows(session.execute(
            update(Ban).where(Ban.value != "192.0.2.3").values(reason="test")
            .execution_options(synchronize_session=False)))
        gone = affected_rows(session.execute(delete(Ban).where(Ban.value == "192.0.2.1")))
    assert (changed, gone) == (2, 1)


def test_no_match_is_zero(db):
    with db.write() as session:
        assert affected_rows(session.execute(delete(Ban).where(Ban.value == "nobody"))) == 0
