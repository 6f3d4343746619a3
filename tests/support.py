"""Helpers for tests that run the real service: free ports, the process, winpop.

free_port, wait_until and the process itself are tools/real_service.py's (tools do not import tests)."""
from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import socket
import ssl
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.catalog import MAIL_LISTENERS, ListenerSpec
from tools.real_service import ROOT, RealService, free_port, wait_until

LISTENERS = tuple(spec.name for spec in MAIL_LISTENERS)

# --- the database under test (issue 8) ----------------------------------------------------------
# Unset: every test uses SQLite in its own temporary directory. Set to a PostgreSQL URL (.ci/run
# does, README "Tests on PostgreSQL"): every test gets a fresh database on that server, cloned
# from a template that already holds the current schema.
TEST_DB_ENV = "POP3SVC_TEST_DB_URL"
_DB_FOR_PATH: dict[Path, str] = {}
_CREATED: list[str] = []
_SEQ = itertools.count(1)
_TEMPLATE: list[str] = []


def pg_url() -> str | None:
    """The PostgreSQL server the suite runs against, or None (SQLite)."""
    return os.environ.get(TEST_DB_ENV) or None


def _pg_admin(url: str):  # noqa: ANN202 - psycopg connection
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return psycopg.connect(host=u.host, port=u.port or 5432, user=u.username, password=u.password,
                           dbname=u.database, autocommit=True)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _template(base: str) -> str:
    if not _TEMPLATE:
        from core.db import Database

        name = f"pop3svc_tpl_{os.getpid()}"
        with _pg_admin(base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        _CREATED.append(name)
        db = Database(_with_database(base, name))
        db.upgrade()
        db.dispose()
        _TEMPLATE.append(name)
    return _TEMPLATE[0]


def db_url_for(sqlite_path: Path) -> str:
    """The database URL a test should use where it would use SQLite at ``sqlite_path``: that
    SQLite file, or (PostgreSQL run) a fresh database of its own, the same one for the same path."""
    base = pg_url()
    if base is None:
        return f"sqlite:///{sqlite_path}"
    key = Path(sqlite_path).resolve()
    if key not in _DB_FOR_PATH:
        template = _template(base)
        name = f"pop3svc_t{os.getpid()}_{next(_SEQ)}"
        with _pg_admin(base) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        _CREATED.append(name)
        _DB_FOR_PATH[key] = _with_database(base, name)
    return _DB_FOR_PATH[key]


def fresh_db_url(tmp: Path) -> str:
    """A new empty database (PostgreSQL run) or a new SQLite file under ``tmp``."""
    base = pg_url()
    if base is None:
        return f"sqlite:///{tmp / f'fresh{next(_SEQ)}.db'}"
    name = f"pop3svc_e{os.getpid()}_{next(_SEQ)}"
    with _pg_admin(base) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _CREATED.append(name)
    return _with_database(base, name)


@atexit.register
def _drop_databases() -> None:
    base = pg_url()
    if base is None or not _CREATED:
        return
    try:
        with _pg_admin(base) as conn:
            for name in reversed(_CREATED):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception:  # the server may already be gone (CI stops it): nothing to tidy then
        pass


def database_contents(url: str) -> bytes:
    """Everything a database holds, as bytes: the SQLite file(s), or every row of every table."""
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    from sqlalchemy import create_engine, text
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            return b"".join(str(tuple(row)).encode() + b"".join(v for v in row if isinstance(v, bytes))
                            for t in tables for row in conn.execute(text(f'SELECT * FROM "{t}"')))
    finally:
        engine.dispose()


def unverified_tls(**attributes: Any) -> ssl.SSLContext:
    """A client TLS context that accepts the service's self-signed certificate (tests look at the
    certificate themselves where it matters); ``attributes`` are set on it (e.g. maximum_version)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for name, value in attributes.items():
        setattr(context, name, value)
    return context


# Every service a test (not a benchmark) starts runs its event loop in asyncio's debug mode and
# reports each callback slower than this (service/daemon.py, POP3SVC_ASYNCIO_DEBUG) from the moment
# its admin channel can answer; stop() fails the test on a report: nothing that waits on the
# database or the disk may run on the event loop (issue 14). A callback's time is its wall time less
# the time its thread waited for a CPU (/proc/thread-self/schedstat), so a busy CI machine does not
# raise false alarms while a callback that blocks (sleeps, waits on a lock or the disk) is caught
# (tests/service/test_stall_report.py). 100 ms: a loop step of our own code takes a few ms;
# POP3SVC_TEST_STALL_MS overrides it (0 turns it off).
STALL_MS = int(os.environ.get("POP3SVC_TEST_STALL_MS", "100"))
STALL_MARKER = "EVENT LOOP STALL"


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; bounded by ``timeout`` (then a test failure)."""
    return wait_until(predicate, what, timeout, interval, error=AssertionError)


class ServiceProcess(RealService):
    """``python main.py service`` in a subprocess, on 127.0.0.1 with free ports (tools/real_service.py),
    on the test run's database, in asyncio's debug mode: stop() fails the test on an event-loop stall."""

    failure = AssertionError

    def __init__(self, data_dir: Path, *, ports: dict[str, int] | None = None, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, db_url: str | None = None) -> None:
        # The database follows the test run (SQLite in the data dir, or POP3SVC_TEST_DB_URL).
        if db_url is None and pg_url() is not None and "--db-url" not in extra_args:
            db_url = db_url_for(Path(data_dir) / "pop3svc.db")
        super().__init__(data_dir, ports=ports, extra_args=extra_args, env=env, db_url=db_url)

    @staticmethod
    def default_port(spec: ListenerSpec) -> int:
        return free_port()

    def environment(self) -> dict[str, str]:
        env = super().environment()
        if "PYTEST_CURRENT_TEST" in os.environ:   # tests, not the benchmarks (debug mode is slower)
            env.setdefault("POP3SVC_ASYNCIO_DEBUG", str(STALL_MS))
        return env

    def stalls(self) -> list[str]:
        """The event-loop stall reports this run of the service wrote (see STALL_MS)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self._log_start)
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in text.splitlines() if STALL_MARKER in line]

    def _check_stalls(self) -> None:
        stalls = self.stalls()
        with contextlib.suppress(OSError):   # each report fails one stop(), not every later one
            self._log_start = self.log_path.stat().st_size
        if stalls:
            threshold = (self.env or {}).get("POP3SVC_ASYNCIO_DEBUG", STALL_MS)
            raise AssertionError(f"the service's event loop stalled ({len(stalls)} report(s) over {threshold} ms):\n"
                                 + "\n".join(stalls[:10]))

    def database_url(self) -> str:
        """The URL of this service's database (for tests that look at it directly)."""
        return self.db_url or f"sqlite:///{self.data_dir / 'pop3svc.db'}"

    def winpop(self, *args: str, input: str | None = None, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "service.winpop", "--data-dir", str(self.data_dir), *args]
        result = subprocess.run(cmd, cwd=ROOT, input=input, capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"winpop {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def add_mailbox(self, address: str, password: str) -> None:
        domain = address.split("@", 1)[1]
        existing = {d["name"] for d in self.call("domain.list")["items"]}
        if domain not in existing:
            self.call("domain.add", name=domain)
        self.call("mailbox.add", address=address, password=password)

    def stop(self, timeout: float = 20.0) -> int | None:
        code = super().stop(timeout)
        self._check_stalls()
        return code

    def kill(self) -> None:
        super().kill()
        self._check_stalls()


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process ``pid`` listens on (TCP), from its fds and /proc/net/tcp{,6}."""
    import ipaddress
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in inodes:   # 0A: TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)
            # /proc prints the address as 32-bit words in host (little-endian) order.
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, size, 4))
            found.add((str(ipaddress.ip_address(raw)), int(hex_port, 16)))
    return found


def reset_connection(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashing or hostile client does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_line(sock: socket.socket) -> bytes:
    """One reply line, read a byte at a time (nothing after it is consumed); what came if the peer closed."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def process_ids(pid: int) -> dict[str, list[int]]:
    """Uid and Gid lines of /proc/PID/status (real, effective, saved, filesystem)."""
    ids = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Uid", "Gid"):
            ids[key] = [int(v) for v in rest.split()]
    return ids


@contextlib.contextmanager
def small_tmpfs(mount: Path, megabytes: int = 16):  # noqa: ANN201 - a generator context manager
    """A small tmpfs at ``mount`` (made here), unmounted afterwards: a disk a test can fill.
    Skips the test where mounting is not allowed (not root)."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system says ENOSPC (big pieces, then small
    ones); the file is returned, to be removed when the test wants room again."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1 << 9):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
    return filler
