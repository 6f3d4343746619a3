"""The mail service process: the command line, logging, privileges, signals, the pid file and
the event-loop stall watcher. The service's parts come from service/app.py: ``build(config)``
makes them, the Runtime starts and stops them.

``python main.py service --data-dir DIR`` runs it in the foreground (DESIGN §2).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import logging.handlers
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

from core.catalog import MAIL_LISTENERS
from core.errors import MailError
from core.ipc.protocol import socket_path
from core.paths import default_data_dir
from service import migrate_db
from service.app import (
    Process,
    Runtime,
    ServiceConfig,
    StartupError,
    build,
    run_in_own_thread,
)
from service.db_password import shown_url
from service.listeners import ConnectionBudget, ListenerState, connection_budget
from service.logbook import RecentHandler
from service.lograte import FloodFilter, flush, loop_exception_handler
from service.privhelper import HelperClient, start_helper
from service.privileges import RunAs, drop_to, hand_over, preload
from service.smtp.aiosmtpd_hooks import set_log_level as set_aiosmtpd_log_level

log = logging.getLogger("pop3svc")

LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
# listener name → its command-line flag (--pop3-port ...): the port for this run
PORT_FLAGS = {spec.name: spec.flag_dest for spec in MAIL_LISTENERS if spec.flag_dest is not None}


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data directory (default: $POP3SVC_DATA_DIR, /var/lib/pop3-service as root, "
                             "else ~/.local/share/pop3-service)")
    parser.add_argument("--db-url", default=None, help="SQLAlchemy database URL (default: SQLite in the data dir); "
                        "give the password with --db-password-file or $POP3SVC_DB_PASSWORD, not here")
    parser.add_argument("--db-password-file", type=Path, default=None,
                        help="file holding the database password (mode 0600); else $POP3SVC_DB_PASSWORD")
    parser.add_argument("--bind", default=None,
                        help="address the mail listeners bind for this run (default: the bind_address setting, "
                             "else every address, 0.0.0.0)")
    for spec in MAIL_LISTENERS:
        if spec.flag is None:
            continue
        parser.add_argument(spec.flag, type=int, default=None,
                            help=f"{spec.name} port for this run (0 disables the listener)")
    parser.add_argument("--user", default=None,
                        help="started as root: bind the ports, then run as this unprivileged user (e.g. pop3svc)")


class LogFile(logging.handlers.RotatingFileHandler):
    """The service log, rotated at its size limit like RotatingFileHandler, but counting its own
    size: the standard handler stats the path twice, formats each record twice and seeks and tells
    the stream for every line (22 µs a record against 8-10 µs here; at Medium SMTP logs a line per
    message)."""

    def _open(self):  # noqa: ANN202 - the base class's signature
        stream = super()._open()
        self.size = os.fstat(stream.fileno()).st_size
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            size = len(text.encode(self.encoding or "utf-8", "replace"))
            if self.maxBytes > 0 and self.size + size > self.maxBytes and self.size > 0:
                self.doRollover()   # closes the file and, through _open, starts the count again
            stream = self.stream
            if stream is None:   # closed at shutdown: reported below like any other failure to write
                raise ValueError("the log file is closed")
            stream.write(text)
            stream.flush()
            self.size += size
            if getattr(self, "dropping", False):
                self.dropping = False
                print("pop3svc: the log file is written again (lines were lost while its disk was full)",
                      file=sys.stderr, flush=True)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                self.handleError(record)
            elif not getattr(self, "dropping", False):   # a full disk: say so once, not a traceback per line
                self.dropping = True
                print(f"pop3svc: the log's disk is full; log lines are dropped until there is room ({exc.strerror})",
                      file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never take the service down
            self.handleError(record)


def setup_logging(data_dir: Path, level: int) -> None:
    # The log lines name no source file, thread or process: skip collecting them for every record
    # (the "Optimization" section of Python's logging HOWTO).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logs = data_dir / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = LogFile(logs / "service.log", maxBytes=10 * 1024 * 1024, backupCount=5, encoding="utf-8")
    file_handler.setFormatter(fmt)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(fmt)
    stream.set_name("stderr")
    root.addHandler(file_handler)
    root.addHandler(stream)
    root.addHandler(RecentHandler())
    flood = FloodFilter()   # client behaviour cannot drive rotation by size (issue 12)
    for handler in root.handlers:
        handler.addFilter(flood)
    set_level(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def set_level(level: int) -> None:
    """The service's logging level (0-3). aiosmtpd's own per-connection chatter is
    kept for Maximum: at Medium our own session lines say what an administrator needs."""
    root = logging.getLogger()
    root.setLevel(LOG_LEVELS.get(level, logging.INFO))
    set_aiosmtpd_log_level(level)
    # The log file gets everything the level lets through; the terminal (or the journal) gets
    # warnings and errors, and everything at Maximum: one write per mail line, not two.
    for handler in root.handlers:
        if handler.get_name() == "stderr":
            handler.setLevel(logging.NOTSET if level >= 3 else logging.WARNING)


# --- event-loop stall reports (issue 14) ------------------------------------------------------
ASYNCIO_DEBUG_ENV = "POP3SVC_ASYNCIO_DEBUG"
STALL_MARKER = "EVENT LOOP STALL"


class StallReport(logging.Filter):
    """In asyncio debug mode, every callback slower than ``slow_callback_duration`` is logged by
    the ``asyncio`` logger as "Executing ... took N seconds": prefix those with STALL_MARKER. They
    are warnings, so they reach the log file and stderr at every logging level, where tests
    (tests/support.py) look for them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Executing "):
            record.msg = f"{STALL_MARKER}: {record.msg}"
        return True


def asyncio_debug_threshold() -> float | None:
    """Seconds from POP3SVC_ASYNCIO_DEBUG=<ms> (run the loop in debug mode and report callbacks
    slower than that), or None when unset or not a positive number."""
    try:
        ms = float(os.environ.get(ASYNCIO_DEBUG_ENV) or 0)
    except ValueError:
        return None
    return ms / 1000 if ms > 0 else None


def _watch_stalls(loop: asyncio.AbstractEventLoop, threshold: float) -> None:
    loop.set_debug(True)
    logger = logging.getLogger("asyncio")
    logger.setLevel(logging.WARNING)   # reported at every logging level, even None (0)
    if not any(isinstance(f, StallReport) for f in logger.filters):
        logger.addFilter(StallReport())
    if _time_callbacks(threshold, logger):
        loop.slow_callback_duration = 3600.0   # ours below replaces asyncio's wall-clock report
    else:
        loop.slow_callback_duration = threshold


def _time_callbacks(threshold: float, logger: logging.Logger) -> bool:
    """Report every event-loop callback whose wall time, less the time the machine's scheduler
    kept this process's threads waiting for a CPU, reaches ``threshold``: what it spent running or
    *blocked* (on the disk, a lock, the database), not what a busy machine took from it.

    Two waits are the scheduler's: the loop thread's own run-queue wait, and that of the other
    Python threads while the callback ran -- a reader thread holding the GIL that is kept off a
    CPU keeps the loop waiting for the GIL although the loop itself is not queued. Run-queue waits
    come from /proc/thread-self/schedstat and /proc/self/task/<tid>/schedstat (second field, ns).
    The other threads' figures are refreshed at most every 5 ms, so a window may count up to 5 ms
    of their waits from just before the callback. False where schedstat is missing (then asyncio's
    own wall-clock report stands)."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)   # this thread's: the loop's
    except OSError:
        return False
    loop_thread = threading.get_ident()
    original = asyncio.events.Handle._run
    others_fds: dict[int, int] = {}
    others_seen = [0.0, 0]   # when the others' total was last read, and that total (ns)

    def waited_ns(thread_fd: int) -> int:
        return int(os.pread(thread_fd, 128, 0).split()[1])

    def others_waited_ns() -> int:
        """The run-queue wait, so far, of every other live Python thread of this process."""
        total, live = 0, set()
        for thread in threading.enumerate():
            tid = thread.native_id
            if tid is None or thread.ident == loop_thread:
                continue
            live.add(tid)
            thread_fd = others_fds.get(tid)
            if thread_fd is None:
                try:
                    thread_fd = others_fds[tid] = os.open(f"/proc/self/task/{tid}/schedstat", os.O_RDONLY)
                except OSError:
                    continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += waited_ns(thread_fd)
        for tid in set(others_fds) - live:   # a thread that ended: its figure is gone with it
            os.close(others_fds.pop(tid))
        return total

    def _run(self: asyncio.events.Handle) -> None:   # named like the method it replaces
        handle = self
        if threading.get_ident() != loop_thread:
            original(handle)
            return
        start, queued = time.perf_counter(), waited_ns(fd)
        if start - others_seen[0] > 0.005:
            others_seen[:] = [start, others_waited_ns()]
        others_before = others_seen[1]
        try:
            original(handle)
        finally:
            wall = time.perf_counter() - start
            if wall >= threshold:
                runnable = (waited_ns(fd) - queued) / 1e9
                others = max(0, others_waited_ns() - others_before) / 1e9
                if wall - runnable - others >= threshold:
                    logger.warning("Executing %r took %.3f seconds (%.3f of them waiting for a CPU, "
                                   "%.3f of other threads' waits)", handle, wall, runnable, others)

    asyncio.events.Handle._run = _run   # type: ignore[method-assign]
    return True


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (the systemd unit sets LimitNOFILE); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def service_config(args: argparse.Namespace) -> ServiceConfig:
    """The command line's options as the service's typed configuration."""
    ports = {name: int(getattr(args, flag)) for name, flag in PORT_FLAGS.items()
             if getattr(args, flag, None) is not None}
    return ServiceConfig(data_dir=(args.data_dir or default_data_dir()).expanduser().resolve(),
                         db_url=args.db_url or None, db_password_file=args.db_password_file,
                         bind=args.bind, ports=ports, user=args.user or None)


class MailService:
    """One service process: what surrounds the Runtime (privileges, logging, signals, pid file)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.config = service_config(args)
        self.data_dir: Path = self.config.data_dir
        self.runtime: Runtime | None = None
        self._stopping = asyncio.Event()
        self.restart_requested = False
        self.dropped_privileges = False
        self.budget = ConnectionBudget(connection_budget(1024))
        self.privhelper: HelperClient | None = None   # the privileged helper's client while started as root

    # -- start-up -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # first: a stop during start-up is honoured after it
            loop.add_signal_handler(sig, self._stopping.set)
        os.umask(0o077)  # the database, mail and keys are the service's alone
        run_as = None
        if self.config.user and os.geteuid() == 0:
            try:
                run_as = RunAs.lookup(self.config.user)
            except MailError as exc:
                print(f"python main.py service: {exc.message}", file=sys.stderr)
                return 2
        if os.geteuid() == 0:
            # Before anything else and before root is dropped: the helper that keeps root for PAM
            # and the local accounts (DESIGN §1 "Privileges"; service/privhelper.py).
            try:
                self.privhelper = start_helper()
            except OSError as exc:
                print(f"python main.py service: cannot start the privileged account helper: {exc}", file=sys.stderr)
                return 2
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        setup_logging(self.data_dir, 2)
        loop.set_exception_handler(loop_exception_handler)
        open_files = raise_open_file_limit()
        self.budget.capacity = connection_budget(open_files)
        log.info("open files: at most %d; client connections of all listeners together: at most %d",
                 open_files, self.budget.capacity)
        process = Process(loop=loop, budget=self.budget, set_log_level=set_level,
                          request_shutdown=self.request_shutdown, accounts=self.privhelper)
        try:
            runtime = await loop.run_in_executor(None, build, self.config, process)
        except StartupError as exc:
            log.critical("%s", exc.message)
            return 2
        self.runtime = runtime
        await loop.run_in_executor(None, runtime.prepare)   # no thread start on the loop later
        if run_as is not None:   # the slow part of the privilege drop, before the admin channel opens
            await self._prepare_drop(runtime, run_as)
        threshold = asyncio_debug_threshold()
        if threshold is not None:   # from the moment the admin channel can answer: nothing may stall
            _watch_stalls(loop, threshold)
        try:
            await runtime.open_admin()
        except StartupError as exc:
            log.critical("%s", exc.message)
            return 2
        runtime.bind()   # while privileged; start() reports failures
        if run_as is not None:   # no await since the admin channel opened: nothing was served as root
            self._drop_privileges(run_as)
        await runtime.workers.run(self._write_pid)
        await runtime.serve()
        self._announce(runtime)
        await self._stopping.wait()
        await self.shutdown()
        return 0

    # -- privileges, pid file, whole-process control (issue 6) -------------------------------
    async def _prepare_drop(self, runtime: Runtime, run_as: RunAs) -> None:
        """Import every module while root can read them and hand the data directory and the mail
        root to ``run_as``: imports and a walk of the mail root, so in a thread (issue 14)."""
        # Every method runs unprivileged: with 'local', PAM checks and account changes go to the
        # privileged helper started at the beginning of run().
        def prepare() -> int:
            preload()
            # The data directory is the service's own. A mail root elsewhere may hold what others
            # own: only what root made there (an earlier start as root) changes hands (issue 12 §2).
            data_dir, root = Path(self.data_dir).resolve(), Path(runtime.store.root).resolve()
            inside = root == data_dir or data_dir in root.parents
            changed = hand_over([data_dir, root] if inside else [data_dir], run_as)
            if not inside:
                changed += hand_over([root], run_as, only_from=0)
            return changed

        changed = await runtime.workers.run(prepare)
        if changed:
            log.warning("gave %d files of %s and %s to %s", changed, self.data_dir, runtime.store.root,
                        run_as.name)

    def _drop_privileges(self, run_as: RunAs) -> None:
        """Stop being root (in the main thread); the admin socket made since is ``run_as``'s too."""
        hand_over([socket_path(self.data_dir)], run_as)
        drop_to(run_as)
        self.dropped_privileges = True

    def _pid_path(self) -> Path:
        return self.data_dir / "service.pid"

    def _write_pid(self) -> None:
        with contextlib.suppress(OSError):
            self._pid_path().write_text(f"{os.getpid()}\n")

    def _remove_pid(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self._pid_path().read_text().strip()) == os.getpid():
                self._pid_path().unlink()

    def request_shutdown(self, restart: bool = False) -> None:
        """service.shutdown: stop the process; with ``restart``, start it again with the same options."""
        log.warning("%s requested through the admin channel", "a restart" if restart else "a shutdown")
        self.restart_requested = restart
        self._stopping.set()

    def _announce(self, runtime: Runtime) -> None:
        parts = [f"{lst.name}={lst.host}:{lst.bound_port}" for lst in runtime.listeners.values()
                 if lst.state == ListenerState.RUNNING]
        line = (f"POP3 Service ready: data dir {self.data_dir}; admin socket {socket_path(self.data_dir)}; "
                f"listeners {' '.join(parts) or 'none'}")
        log.warning("%s", line)
        print(line, flush=True)

    # -- shutdown -------------------------------------------------------------------------
    async def shutdown(self) -> None:
        log.warning("stopping the service")
        if self.runtime is not None:
            await self.runtime.stop()

        def finish() -> None:   # waits (the helper's exit): in a thread of its own (issue 14)
            if self.privhelper is not None:
                self.privhelper.close()
            self._remove_pid()
            flush()   # the counts of client-triggered lines not written one by one

        await run_in_own_thread(finish)
        log.warning("service stopped")


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    return shown_url(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py service",
                                     description="Run the mail service in the foreground.")
    add_service_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "migrate-db":   # copy an installation's SQLite database to PostgreSQL
        return migrate_db.main(argv[1:])
    args = parser.parse_args(argv)
    service = MailService(args)
    try:
        code = asyncio.run(service.run())
    except KeyboardInterrupt:
        return 0
    if service.restart_requested and code == 0:
        if service.dropped_privileges:
            # Root is gone: the ports below 1024 cannot be bound again by this process. Exit with
            # the code the systemd unit restarts on (RestartForceExitStatus=75).
            log.warning("restart requested: exiting with 75 for the service manager to start us again")
            return 75
        log.warning("restarting the service process")
        logging.shutdown()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    return code
