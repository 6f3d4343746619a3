"""Move a single-machine installation onto PostgreSQL (issue 8, DESIGN §8).

``python main.py service migrate-db --data-dir DIR --to postgresql+psycopg://…`` copies every
table of the installation's SQLite database (settings, domains, mailboxes, credentials, the
message index, the audit log, the queue …) into an empty PostgreSQL database, in dependency
order and in batches, in one transaction: either everything arrives or nothing does. Then it
moves each table's id sequence past the copied ids, compares the row count of every table and
the counter sums, and commits only if they agree. The SQLite file is read through a private copy and
is left exactly as it was, so going back is a matter of starting the service without ``--db-url``.

The queue's spool files are copied to the shared spool (``<mail root>/.queue/msg``) that nodes
on PostgreSQL use. The mail itself stays where it is: move the mail root to the shared storage
first (or after), and give its new place with ``--mailroot``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, Table, create_engine, func, inspect, select, text, update
from sqlalchemy.engine import Connection, make_url

from core.db import Database
from core.errors import MailError, Unavailable
from core.ipc.client import AdminClient
from core.paths import default_data_dir
from core.tables import Base, Domain, Mailbox, Message, QueuedMessage, Setting
from service.db_password import database_url, shown_url

log = logging.getLogger(__name__)

BATCH = 2000


class MigrationRefused(MailError):
    """The copy cannot start or did not verify; nothing was committed."""

    code = "conflict"


@dataclass
class MigrationReport:
    """What was copied: rows per table, the verified sums, and the spool files copied."""

    rows: dict[str, int] = field(default_factory=dict)
    sums: dict[str, int] = field(default_factory=dict)
    spool_files: int = 0


def sqlite_readonly_url(path: Path) -> str:
    """A SQLite URL that cannot write (``mode=ro``)."""
    return f"sqlite+pysqlite:///file:{path}?mode=ro&uri=true"


def _snapshot(source_path: Path, workdir: Path) -> Path:
    """A private copy of the database and its WAL to read from. Even a read-only open of a WAL
    database creates ``-shm``/``-wal`` files next to it; reading a copy leaves the installation's
    files exactly as they were, and replays a WAL a crash left behind on the copy only."""
    copy = workdir / source_path.name
    for suffix in ("", "-wal"):
        src = Path(f"{source_path}{suffix}")
        if src.exists():
            shutil.copy2(src, f"{copy}{suffix}")
    return copy


def _tables(source: Connection) -> list[Table]:
    present = set(inspect(source).get_table_names())
    return [t for t in Base.metadata.sorted_tables if t.name in present]


def _revision(conn: Connection) -> str | None:
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:
        return None


def _utc(row: dict[str, Any], datetime_columns: list[str]) -> dict[str, Any]:
    """SQLite hands back naive datetimes that mean UTC; PostgreSQL must be told so."""
    for name in datetime_columns:
        value = row.get(name)
        if isinstance(value, datetime) and value.tzinfo is None:
            row[name] = value.replace(tzinfo=UTC)
    return row


def _sums(conn: Connection) -> dict[str, int]:
    """The counters the copy must keep exactly (and what the index says they should be)."""
    values = {
        "mailbox messages": conn.scalar(select(func.coalesce(func.sum(Mailbox.message_count), 0))),
        "mailbox bytes": conn.scalar(select(func.coalesce(func.sum(Mailbox.total_bytes), 0))),
        "domain messages": conn.scalar(select(func.coalesce(func.sum(Domain.message_count), 0))),
        "domain bytes": conn.scalar(select(func.coalesce(func.sum(Domain.total_bytes), 0))),
        "domain mailboxes": conn.scalar(select(func.coalesce(func.sum(Domain.mailbox_count), 0))),
        "indexed messages": conn.scalar(select(func.count(Message.id)).where(Message.deleted.is_(False))),
        "indexed bytes": conn.scalar(select(func.coalesce(func.sum(Message.size), 0))
                                     .where(Message.deleted.is_(False))),
    }
    return {k: int(v or 0) for k, v in values.items()}


def migrate(source_path: Path, target_url: str, *, mailroot: Path | None = None, batch: int = BATCH,
            progress: Any = None) -> MigrationReport:
    """Copy the SQLite database at ``source_path`` into the empty database at ``target_url``."""
    say = progress or (lambda _text: None)
    if not source_path.is_file():
        raise MigrationRefused(f"There is no database at {source_path}; give the installation's --data-dir.")
    if target_url.startswith("sqlite"):
        raise MigrationRefused("The target must be a PostgreSQL URL (postgresql+psycopg://user:password@host/db).")
    workdir = tempfile.TemporaryDirectory(prefix="pop3svc-migrate-")
    source_engine = create_engine(f"sqlite:///{_snapshot(source_path, Path(workdir.name))}")
    target = Database(target_url, pool_size=2, application_name="pop3svc-migrate")
    report = MigrationReport()
    try:
        target.upgrade()
        with source_engine.connect() as src, target.engine.begin() as dst:
            src_rev, dst_rev = _revision(src), _revision(dst)
            if src_rev != dst_rev:
                raise MigrationRefused(
                    f"The SQLite database is at schema {src_rev or 'unknown'}, this version at {dst_rev}. "
                    "Start the service once on the SQLite database (it upgrades it), stop it, and run this again.")
            tables = _tables(src)
            busy = [t.name for t in tables if dst.scalar(select(func.count()).select_from(t))]
            if busy:
                raise MigrationRefused(f"The target database is not empty ({', '.join(busy)} hold rows); "
                                       "give an empty database so nothing is mixed or overwritten.")
            for table in tables:
                datetime_columns = [c.name for c in table.columns if isinstance(c.type, DateTime)]
                order = list(table.primary_key.columns) or list(table.columns)[:1]
                copied = 0
                result = src.execution_options(yield_per=batch).execute(select(table).order_by(*order))
                for chunk in result.mappings().partitions(batch):
                    dst.execute(table.insert(), [_utc(dict(row), datetime_columns) for row in chunk])
                    copied += len(chunk)
                report.rows[table.name] = copied
                say(f"  {table.name}: {copied} rows")
            if target.is_postgres:
                _reset_sequences(dst, tables)
            if mailroot is not None:
                dst.execute(update(Setting).where(Setting.name == "mailroot")
                            .values(value=_json_text(str(mailroot))))
            # Verify inside the transaction: a mismatch rolls everything back.
            for table in tables:
                want = src.scalar(select(func.count()).select_from(table))
                got = dst.scalar(select(func.count()).select_from(table))
                if want != got:
                    raise MigrationRefused(f"Verification failed: {table.name} has {want} rows in SQLite but "
                                           f"{got} in PostgreSQL; nothing was committed.")
            src_sums, dst_sums = _sums(src), _sums(dst)
            if src_sums != dst_sums:
                raise MigrationRefused(f"Verification failed: counters differ ({src_sums} against {dst_sums}); "
                                       "nothing was committed.")
            report.sums = dst_sums
            root = mailroot or _stored_mailroot(src)
            queue_ids = list(src.scalars(select(QueuedMessage.queue_id)))
        report.spool_files = _copy_spool(source_path.parent / "queue" / "msg", root, queue_ids)
    finally:
        source_engine.dispose()
        target.dispose()
        workdir.cleanup()
    return report


def _json_text(value: Any) -> str:
    return json.dumps(value)


def _stored_mailroot(conn: Connection) -> Path | None:
    raw = conn.scalar(select(Setting.value).where(Setting.name == "mailroot"))
    try:
        value = json.loads(raw) if raw else ""
    except ValueError:
        value = raw
    return Path(value) if value else None


def _reset_sequences(conn: Connection, tables: list[Table]) -> None:
    """Move every id sequence past the copied ids, so new rows do not collide with them."""
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or pk[0].name != "id" or not pk[0].autoincrement:
            continue
        seq = conn.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
        if seq is None:
            continue
        top = conn.scalar(select(func.max(pk[0])))
        if top is None:
            conn.execute(text("SELECT setval(CAST(:s AS regclass), 1, false)"), {"s": seq})
        else:
            conn.execute(text("SELECT setval(CAST(:s AS regclass), :v, true)"), {"s": seq, "v": int(top)})


def _copy_spool(legacy: Path, mailroot: Path | None, queue_ids: list[str]) -> int:
    """Copy the queued messages' spool files to ``<mail root>/.queue/msg`` (the originals stay)."""
    if not queue_ids or mailroot is None or not legacy.is_dir():
        return 0
    target = mailroot / ".queue" / "msg"
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    (mailroot / ".queue" / "tmp").mkdir(exist_ok=True, mode=0o700)
    copied = 0
    for queue_id in queue_ids:
        src = legacy / queue_id
        if src.is_file() and not (target / queue_id).exists():
            tmp = mailroot / ".queue" / "tmp" / queue_id
            shutil.copyfile(src, tmp)
            os.chmod(tmp, 0o600)
            os.rename(tmp, target / queue_id)
            copied += 1
    return copied


def _service_running(data_dir: Path) -> bool:
    try:
        with AdminClient(data_dir, timeout=3) as client:
            client.call("service.status")
        return True
    except (Unavailable, OSError):
        return False
    except MailError:
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python main.py service migrate-db",
        description="Copy an installation's SQLite database into an empty PostgreSQL database, verify it, and "
                    "leave the SQLite file untouched. Stop the service first.")
    parser.add_argument("--data-dir", type=Path, default=None, help="the installation's data directory")
    parser.add_argument("--to", required=True, metavar="URL",
                        help="postgresql+psycopg://user@host/db (the password from --db-password-file or "
                             "$POP3SVC_DB_PASSWORD)")
    parser.add_argument("--db-password-file", type=Path, default=None,
                        help="file holding the PostgreSQL password (mode 0600); else $POP3SVC_DB_PASSWORD")
    parser.add_argument("--mailroot", type=Path, default=None,
                        help="the mail root's new place on shared storage (its domain folders must be there)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"rows per insert (default {BATCH})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    data_dir = (args.data_dir or default_data_dir()).expanduser().resolve()
    if _service_running(data_dir):
        print(f"migrate-db: the service of {data_dir} is running; stop it first (winpop stop is not enough: "
              "stop the process), so the copy is consistent.", file=sys.stderr)
        return 1
    if args.mailroot is not None:
        missing = _missing_domain_folders(data_dir / "pop3svc.db", args.mailroot)
        if missing:
            print(f"migrate-db: {args.mailroot} does not hold the folders of the domains {', '.join(missing[:5])}; "
                  "move the mail root there first.", file=sys.stderr)
            return 1
    try:
        args.to = database_url(args.to, password_file=args.db_password_file)
    except MailError as exc:
        print(f"migrate-db: {exc.message}", file=sys.stderr)
        return 1
    print(f"Copying {data_dir / 'pop3svc.db'} to {_safe(args.to)}")
    try:
        report = migrate(data_dir / "pop3svc.db", args.to, mailroot=args.mailroot, batch=max(1, args.batch),
                         progress=print)
    except MailError as exc:
        print(f"migrate-db: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:  # a connection refused, a bad URL: one line, not a traceback
        print(f"migrate-db: {type(exc).__name__}: {str(exc).replace(_password(args.to), '***')}", file=sys.stderr)
        return 1
    total = sum(report.rows.values())
    print(f"Verified: {total} rows in {len(report.rows)} tables; "
          + ", ".join(f"{k} {v}" for k, v in report.sums.items()))
    if report.spool_files:
        print(f"Copied {report.spool_files} queued message file(s) to the shared spool.")
    print(f"Done. The SQLite file is unchanged. Start each node with --db-url {_without_password(args.to)} "
          "and the password in --db-password-file or $POP3SVC_DB_PASSWORD")
    return 0


def _missing_domain_folders(db_path: Path, mailroot: Path) -> list[str]:
    workdir = tempfile.TemporaryDirectory(prefix="pop3svc-migrate-")
    engine = create_engine(f"sqlite:///{_snapshot(db_path, Path(workdir.name))}")
    try:
        with engine.connect() as conn:
            names = list(conn.scalars(select(Domain.name)))
    except Exception:
        return []
    finally:
        engine.dispose()
        workdir.cleanup()
    return [n for n in names if not (mailroot / n).is_dir()]


def _password(url: str) -> str:
    """The password in ``url`` (to cut it out of error messages), or a string no message holds."""
    try:
        return make_url(url).password or "\x00"
    except Exception:
        return "\x00"


def _without_password(url: str) -> str:
    """``url`` with no password at all (to be copied onto a command line)."""
    try:
        return make_url(url)._replace(password=None).render_as_string(hide_password=False)
    except Exception:
        return _safe(url)


def _safe(url: str) -> str:
    return shown_url(url)
