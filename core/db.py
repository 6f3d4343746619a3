"""The database: engine, sessions, and migrations to the current schema.

SQLite (WAL) by default in the data directory; any SQLAlchemy URL works (PostgreSQL for several
nodes). Writers take the write lock up front (``BEGIN IMMEDIATE`` on SQLite), so two writers
never deadlock on a lock upgrade.
"""
from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def affected_rows(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` matched: at run time its
    result is a ``CursorResult``, though the ORM's signature promises only ``Result``."""
    return cast(CursorResult[Any], result).rowcount or 0


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection) -> None:
    dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's recipe)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives a crash of the process; a power cut may roll back
    # the last commits, and the start-up reconcile re-indexes any message file in new/.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _install_sqlite_pragmas(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and explicit BEGIN so we choose IMMEDIATE for writers."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001 - DBAPI types
        _sqlite_pragmas(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        if conn.get_execution_options().get("sqlite_immediate"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


# Session-level advisory lock keys (PostgreSQL): one node at a time runs the start-up repairs.
RECONCILE_LOCK = 0x504F5033_0001


class Database:
    """Owns the engine; hands out read and write sessions as context managers.

    On PostgreSQL (``postgresql+psycopg://``, psycopg 3) the pool is sized for one service node:
    ``pool_size`` connections kept open (the service's worker threads each hold at most one at a
    time) and as many again in overflow for bursts; connections are checked before use, so a
    restarted database server costs one failed ping, not a failed delivery.
    """

    def __init__(self, url: str, *, pool_size: int = 16, application_name: str = "pop3svc") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict = {"future": True}
        if not self.is_sqlite:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=30,
                          pool_recycle=3600)
        if self.is_postgres:
            kwargs["connect_args"] = {"application_name": application_name[:63], "connect_timeout": 10}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _install_sqlite_pragmas(self.engine)
            writer_engine: Engine = self.engine.execution_options(sqlite_immediate=True)
        else:
            writer_engine = self.engine
        self._writer_engine = writer_engine
        # A file database (not :memory:, which is per connection) gets the delivery connection.
        self.has_sqlite_writer = self.is_sqlite and self.engine.url.database not in (None, "", ":memory:")
        self._fast: sqlite3.Connection | None = None   # see sqlite_write
        self._fast_lock = threading.Lock()
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(writer_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """A Core connection in one write transaction, for hot paths (delivery) that skip the ORM."""
        with self._writer_engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def sqlite_write(self) -> Iterator[sqlite3.Cursor]:
        """SQLite only: one write transaction (BEGIN IMMEDIATE) on a connection kept for the
        delivery path, with the same pragmas as the pool's. It skips the pool checkout and
        SQLAlchemy's per-statement work, which cost 0.22 of the 0.27 ms of a delivery's index
        transaction; callers run SQL compiled once from Core statements (core.store)."""
        with self._fast_lock:
            conn = self._fast
            if conn is None:
                database = self.engine.url.database
                if not database:
                    raise RuntimeError("sqlite_write needs a file database (see has_sqlite_writer)")
                conn = sqlite3.connect(database, check_same_thread=False, timeout=30)
                _sqlite_pragmas(conn)
                self._fast = conn
            cur = conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                conn.rollback()
                raise
            cur.execute("COMMIT")

    @contextlib.contextmanager
    def read_conn(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closed (and its transaction ended) at the end. Objects read stay
        usable afterwards as detached plain values."""
        with self._reader() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A session for one atomic change: committed on success, rolled back on any error."""
        with self._writer() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (creates it on an empty database)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    @contextlib.contextmanager
    def exclusive(self, key: int) -> Iterator[None]:
        """Hold a cluster-wide lock around a body (PostgreSQL advisory lock on one connection);
        a no-op on SQLite, where only one service uses the database."""
        if not self.is_postgres:
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        with self._fast_lock:
            if self._fast is not None:
                self._fast.close()
                self._fast = None
        self.engine.dispose()
