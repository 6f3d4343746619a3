"""The mail service process: start-up, listeners, the admin channel, signals, shutdown.

``python main.py service --data-dir DIR`` runs it in the foreground (DESIGN §2).
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
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
from typing import Any

from sqlalchemy import select

from core.admin import Admin, domain_info, mailbox_info
from core.catalog import MAIL_LISTENERS, TlsMode
from core.db import Database, sqlite_url
from core.errors import Invalid, MailError, NotFound, Unavailable
from core.ipc.protocol import socket_path
from core.model import to_json
from core.paths import can_bind_privileged, default_data_dir
from core.hostname import is_loopback_name
from core.settings import EVERY_ADDRESS, Settings, default_hostname
from core.store import MailStore
from core.tables import Domain, Mailbox, Setting
from service.context import ServiceContext
from service.ipc.server import AdminServer
from service.listeners import ConnectionBudget, Listener, ListenerState, connection_budget
from service.pop3.server import Pop3Server
from service.smtp.server import SmtpServer

log = logging.getLogger("pop3svc")

LOG_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}
# listener name → (its port setting, the attribute of its command-line flag): core/catalog.py
PORTS = {spec.name: (spec.port_setting, spec.flag_dest) for spec in MAIL_LISTENERS}
ACTIONS = ("start", "stop", "pause", "resume", "restart")


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
            self.stream.write(text)
            self.stream.flush()
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
    from service.logbook import RecentHandler
    root.addHandler(RecentHandler())
    from service.lograte import FloodFilter
    flood = FloodFilter()   # client behaviour cannot drive rotation by size (issue 12)
    for handler in root.handlers:
        handler.addFilter(flood)
    set_level(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def set_level(level: int) -> None:
    """The service's logging level (0-3). aiosmtpd's own per-connection chatter ("mail.log") is
    kept for Maximum: at Medium our own session lines say what an administrator needs."""
    root = logging.getLogger()
    root.setLevel(LOG_LEVELS.get(level, logging.INFO))
    logging.getLogger("mail.log").setLevel(logging.DEBUG if level >= 3 else logging.WARNING)
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

    def _run(handle: asyncio.events.Handle) -> None:
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


def _first_run_settings(db: Database, data_dir: Path) -> dict[str, Any]:
    """Fix, once and explicitly, what a new installation chooses: mail root, key store, host name."""
    from core.auth.keystore import choose_keystore

    with db.write() as session:
        values = Settings.get_all(session)
        stored = set(session.scalars(select(Setting.name)))
        if not values["mailroot"]:
            Settings.put(session, "mailroot", str((data_dir / "mailroot").resolve()))
        if "keystore" not in stored:
            store = choose_keystore()
            Settings.put(session, "keystore", store)
            log.warning("first start: the server key is kept in the %s (shown by 'winpop get keystore')",
                        "system keyring" if store == "keyring" else f"key file {data_dir / 'server.key'}")
        if not values["hostname"]:
            Settings.put(session, "hostname", default_hostname())
        elif is_loopback_name(values["hostname"]) and not is_loopback_name(default_hostname()):
            # Earlier versions stored socket.getfqdn(), which is "localhost" on many Debian machines.
            log.warning("the stored host name '%s' is a loopback name; using the machine's name '%s' "
                        "(change with winpop set hostname)", values["hostname"], default_hostname())
            Settings.put(session, "hostname", default_hostname())
        if "port" not in stored and not can_bind_privileged():
            # A user without the right to bind ports below 1024 gets working ports, not failures.
            for name, port in UNPRIVILEGED_PORTS.items():
                Settings.put(session, name, port)
            log.warning("first start without the right to bind ports below 1024: using POP3 %d/%d and SMTP "
                        "%d/%d/%d (change with winpop set)", *UNPRIVILEGED_PORTS.values())
        return Settings.get_all(session)


UNPRIVILEGED_PORTS = {spec.port_setting: spec.unprivileged_port for spec in MAIL_LISTENERS}


class MailService:
    """One running service: owns the loop's components and their order of start and stop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir: Path = (args.data_dir or default_data_dir()).expanduser().resolve()
        self.ctx: ServiceContext | None = None
        self.admin_server: AdminServer | None = None
        self._stopping = asyncio.Event()
        self._changed: set[int] = set()    # mailboxes whose counters moved, for the next change events
        self._flush_scheduled = False
        self._changed_lock = threading.Lock()
        self.restart_requested = False
        self.dropped_privileges = False
        self._shutting_down = False        # set by shutdown(): no new work for the store's threads
        self.budget = ConnectionBudget(connection_budget(1024))
        self.privhelper: Any = None        # service.privhelper.HelperClient while started as root

    # -- start-up -------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # first: a stop during start-up is honoured after it
            loop.add_signal_handler(sig, self._stopping.set)
        os.umask(0o077)  # the database, mail and keys are the service's alone
        run_as = None
        if getattr(self.args, "user", None) and os.geteuid() == 0:
            from service.privileges import RunAs
            try:
                run_as = RunAs.lookup(self.args.user)
            except MailError as exc:
                print(f"python main.py service: {exc.message}", file=sys.stderr)
                return 2
        if os.geteuid() == 0:
            # Before anything else and before root is dropped: the helper that keeps root for PAM
            # and the local accounts (DESIGN §1 "Privileges"; service/privhelper.py).
            from service.privhelper import start_helper
            try:
                self.privhelper = start_helper()
            except OSError as exc:
                print(f"python main.py service: cannot start the privileged account helper: {exc}", file=sys.stderr)
                return 2
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        setup_logging(self.data_dir, 2)
        from service.lograte import loop_exception_handler
        loop.set_exception_handler(loop_exception_handler)
        open_files = raise_open_file_limit()
        self.budget.capacity = connection_budget(open_files)
        log.info("open files: at most %d; client connections of all listeners together: at most %d",
                 open_files, self.budget.capacity)
        from service.db_password import database_url
        password_file = getattr(self.args, "db_password_file", None)
        try:
            if self.args.db_url:
                url = database_url(self.args.db_url, password_file=password_file)
            elif password_file is not None:
                raise Invalid("--db-password-file needs --db-url (the default SQLite database has no password).")
            else:
                url = sqlite_url(self.data_dir / "pop3svc.db")
        except Invalid as exc:
            log.critical("%s", exc.message)
            return 2
        db = Database(url)
        try:
            await loop.run_in_executor(None, db.upgrade)
        except Exception as exc:
            log.critical("cannot open the database %s: %s", _safe_url(url), exc)
            return 2
        try:
            values = await loop.run_in_executor(None, _first_run_settings, db, self.data_dir)
        except MailError as exc:
            log.critical("%s", exc.message)
            return 2
        set_level(int(values["logging"]))
        hostname = values["hostname"] or default_hostname()
        store = MailStore(db, Path(values["mailroot"]), hostname=hostname)
        ctx = ServiceContext(data_dir=self.data_dir, db=db, store=store, loop=loop, hostname=hostname,
                             settings=values)
        self.ctx = ctx
        try:
            ctx.auth = await ctx.run(self._make_provider, ctx, values)   # key files, keyring: a thread
        except MailError as exc:
            log.critical("%s", exc.message)
            return 2
        from service.auth_methods import AVAILABLE_METHODS
        ctx.admin = Admin(db, store, auth=ctx.auth, publish=ctx.events.publish, available_methods=AVAILABLE_METHODS,
                          sealer=ctx.auth_methods.sealer)
        ctx.on_settings_changed = self._apply_settings
        ctx.controller = self.control
        ctx.request_shutdown = self.request_shutdown
        store.on_change.append(self._store_changed)
        if db.is_postgres:   # several nodes may share this database: relay change events (issue 8)
            from service.cluster import attach
            ctx.cluster = await loop.run_in_executor(None, attach, ctx)
        try:
            await ctx.run(lambda: store.check_root(create=not store.has_domains()))
            # On a shared database a young unindexed file may be another node's delivery in flight.
            report = await ctx.run(store.reconcile, orphan_min_age=0.0 if db.is_sqlite else 600.0)
            log.info("reconciled %d mailboxes", report.mailboxes_checked)
        except Exception as exc:   # the service still starts: the console and winpop say what is wrong
            log.error("the mail store needs attention: %s", getattr(exc, "message", exc))
        await ctx.run(self._make_tls, ctx, values)   # PEM files, perhaps a new self-signed certificate
        await ctx.run(self._make_throttle, ctx)      # bans from the database
        await loop.run_in_executor(None, ctx.start_threads)   # no thread start on the loop later
        if run_as is not None:   # the slow part of the privilege drop, before the admin channel opens
            await self._prepare_drop(run_as)
        self.admin_server = AdminServer(ctx, socket_path(self.data_dir))
        threshold = asyncio_debug_threshold()
        if threshold is not None:   # from the moment the admin channel can answer: nothing may stall
            _watch_stalls(loop, threshold)
        try:
            await self.admin_server.start()
        except (OSError, RuntimeError) as exc:
            log.critical("cannot open the admin channel at %s: %s", socket_path(self.data_dir), exc)
            return 2
        self._make_listeners(ctx)
        for listener in ctx.listeners.values():   # bind while privileged; start() reports failures
            with contextlib.suppress(OSError):
                listener.bind()
        if run_as is not None:   # no await since the admin channel opened: nothing was served as root
            self._drop_privileges(run_as)
        await ctx.run(self._write_pid)
        for listener in ctx.listeners.values():
            try:
                await listener.start()
            except OSError as exc:
                log.error("listener %s: %s", listener.name, listener.error or exc)
        if ctx.smtp is not None and hasattr(ctx.smtp, "start"):
            await ctx.smtp.start()
        self._announce(ctx)
        self._watch_disks(ctx)
        ctx.events.publish("service.state", self._status())
        watch = loop.create_task(self._watch_tls(), name="tls-watch")
        await self._stopping.wait()
        watch.cancel()
        if getattr(ctx, "disk", None) is not None:
            await ctx.disk.stop()
        await self.shutdown()
        return 0

    # -- privileges, pid file, whole-process control (issue 6) -------------------------------
    async def _prepare_drop(self, run_as: Any) -> None:
        """Import every module while root can read them and hand the data directory and the mail
        root to ``run_as``: imports and a walk of the mail root, so in a thread (issue 14)."""
        from service.privileges import hand_over, preload
        # Every method runs unprivileged: with 'local', PAM checks and account changes go to the
        # privileged helper started at the beginning of run().
        def prepare() -> int:
            preload()
            # The data directory is the service's own. A mail root elsewhere may hold what others
            # own: only what root made there (an earlier start as root) changes hands (issue 12 §2).
            data_dir, root = Path(self.data_dir).resolve(), Path(self.ctx.store.root).resolve()
            inside = root == data_dir or data_dir in root.parents
            changed = hand_over([data_dir, root] if inside else [data_dir], run_as)
            if not inside:
                changed += hand_over([root], run_as, only_from=0)
            return changed

        changed = await self.ctx.run(prepare)
        if changed:
            log.warning("gave %d files of %s and %s to %s", changed, self.data_dir, self.ctx.store.root,
                        run_as.name)

    def _drop_privileges(self, run_as: Any) -> None:
        """Stop being root (in the main thread); the admin socket made since is ``run_as``'s too."""
        from service.privileges import drop_to, hand_over
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

    async def _watch_tls(self) -> None:
        """Pick up a renewed certificate within a minute, and repeat the expiry warning daily."""
        ticks = 0
        while True:
            await asyncio.sleep(60)
            ticks += 1
            tls = self.ctx.tls
            if tls is None:
                continue
            with contextlib.suppress(Exception):   # stat and read the PEM files: in a thread (issue 14)
                await self.ctx.run(tls.refresh)
                if ticks % (24 * 60) == 0:
                    await self.ctx.run(tls.warn_if_expiring, tls.cert_path)

    def _make_provider(self, ctx: ServiceContext, values: dict[str, Any]) -> Any:
        """The provider the ``auth`` setting names (service/auth_methods.py switches it later)."""
        from service.auth_methods import AuthMethods

        ctx.auth_methods = AuthMethods(ctx, self.data_dir, values["keystore"], accounts=self.privhelper)
        return ctx.auth_methods.build(values)

    def _watch_disks(self, ctx: ServiceContext) -> None:
        """Measure free space on the data directory's and the mail root's disks (service/disk.py)."""
        from service.disk import DiskWatch

        def places() -> dict[str, Path]:
            found = {"data directory": self.data_dir, "mail root": ctx.store.root}
            if ctx.db.is_sqlite and ctx.db.engine.url.database:
                found = {"database": Path(ctx.db.engine.url.database).parent, **found}
            return found

        def changed() -> None:
            ctx.events.publish("service.state", self._status())
            pending = getattr(ctx, "pending_audit", None)   # audit entries a full disk held back
            if pending is not None and pending.entries:
                ctx.loop.create_task(pending.flush())

        ctx.disk = DiskWatch(places, ctx.run, changed)
        ctx.disk.start()

    def _make_tls(self, ctx: ServiceContext, values: dict[str, Any]) -> None:
        from service.tls import TlsMaterial
        try:
            ctx.tls = TlsMaterial(self.data_dir, ctx.hostname, values["tls_cert"], values["tls_key"])
        except Exception as exc:  # bad PEM files: say so; plaintext listeners still run
            log.error("TLS is not available: %s (check the certificate and key settings)", exc)
            ctx.tls = None

    def _make_throttle(self, ctx: ServiceContext) -> None:
        try:
            from service.throttle import LoginThrottle
        except ImportError:
            return
        ctx.throttle = LoginThrottle(ctx)

    def _port(self, name: str) -> int:
        setting, flag = PORTS[name]
        override = getattr(self.args, flag, None)
        return int(override) if override is not None else int(self.ctx.setting(setting))

    def _host(self) -> str:
        """The listeners' address: ``--bind`` for this run, else the stored ``bind_address``."""
        override = getattr(self.args, "bind", None)
        if override is not None:
            return override or EVERY_ADDRESS
        return str(self.ctx.setting("bind_address") or EVERY_ADDRESS)

    def _make_listeners(self, ctx: ServiceContext) -> None:
        host = self._host()
        banned = ctx.throttle.is_banned if ctx.throttle is not None else None
        tls = ctx.tls.context if ctx.tls is not None else None
        pop3 = Pop3Server(ctx)
        ctx.pop3 = pop3
        for spec in (s for s in MAIL_LISTENERS if s.protocol == "pop3"):
            name, implicit = spec.name, spec.tls == TlsMode.IMPLICIT
            port = self._port(name)
            if port == 0 or (implicit and tls is None):
                continue
            ctx.listeners[name] = Listener(name, "pop3", host, port, pop3.protocol_factory(implicit_tls=implicit),
                                           refusal=pop3.refusal, ssl_context=tls if implicit else None,
                                           limits=ctx.limits, is_banned=banned, budget=self.budget)
        smtp = SmtpServer(ctx, sealer=ctx.auth_methods.sealer)
        ctx.smtp = smtp
        for spec in (s for s in MAIL_LISTENERS if s.protocol == "smtp"):
            name, implicit = spec.name, spec.tls == TlsMode.IMPLICIT
            port = self._port(name)
            if port == 0 or (implicit and tls is None):
                continue
            ctx.listeners[name] = Listener(name, "smtp", host, port, smtp.protocol_factory(name),
                                           refusal=smtp.refusal, ssl_context=tls if implicit else None,
                                           limits=ctx.limits, is_banned=banned, budget=self.budget)

    def _announce(self, ctx: ServiceContext) -> None:
        parts = [f"{lst.name}={lst.host}:{lst.bound_port}" for lst in ctx.listeners.values()
                 if lst.state == ListenerState.RUNNING]
        line = (f"POP3 Service ready: data dir {self.data_dir}; admin socket {socket_path(self.data_dir)}; "
                f"listeners {' '.join(parts) or 'none'}")
        log.warning("%s", line)
        print(line, flush=True)

    # -- running --------------------------------------------------------------------------
    def _status(self) -> dict[str, Any]:
        from service.ipc.handlers import service_status
        return service_status(self.ctx)

    async def control(self, action: str, name: str = "") -> None:
        """service.control: act on one listener or all of them."""
        ctx = self.ctx
        action = action.strip().lower()
        if action not in ACTIONS:
            raise Invalid(f"Unknown action '{action}'; use one of: {', '.join(ACTIONS)}.")
        if name == "all":   # a setting every listener follows (bind_address) names them so
            name = ""
        if name and name not in ctx.listeners:
            known = ", ".join(ctx.listeners) or "none"
            raise NotFound(f"There is no listener '{name}'. Listeners: {known}.")
        targets = [ctx.listeners[name]] if name else list(ctx.listeners.values())
        failures = []
        for listener in targets:
            if action in ("stop", "restart"):
                await listener.stop()
            if action in ("start", "restart"):
                if listener.state == ListenerState.PAUSED:
                    listener.resume()
                    continue
                if listener.state == ListenerState.STOPPED:
                    listener.port = self._port(listener.name)
                    listener.host = self._host()
                try:
                    await listener.start()
                except OSError:
                    failures.append(f"{listener.name}: {listener.error}")
            elif action == "pause":
                listener.pause()
            elif action == "resume":
                listener.resume()
        ctx.events.publish("service.state", self._status())
        if failures:
            raise Unavailable("Could not start " + "; ".join(failures) +
                              ". Choose a free port, or run the service with the rights to bind it.")

    def _apply_settings(self) -> None:
        level = int(self.ctx.setting("logging"))
        set_level(level)
        hostname = str(self.ctx.setting("hostname") or default_hostname())
        if hostname != self.ctx.hostname:   # greetings, Received: and HELO follow it at once, no restart
            log.warning("the server's host name is now %s", hostname)
            self.ctx.hostname = hostname
            if self.ctx.tls is not None:
                self.ctx.tls.hostname = hostname
        if getattr(self.ctx, "auth_methods", None) is not None:
            self.ctx.auth_methods.apply()   # `winpop set auth ...`: switch the provider now
        if self.admin_server is not None:
            self.admin_server.apply_group()
        if self.ctx.tls is not None:
            with contextlib.suppress(Exception):
                self.ctx.tls.configure(self.ctx.setting("tls_cert"), self.ctx.setting("tls_key"))

    def _store_changed(self, mailbox_ids: set[int]) -> None:
        """Called from a store thread after counters moved: coalesce into change events. Only
        the first change of a quarter second wakes the event loop, not every delivery."""
        with self._changed_lock:
            self._changed |= mailbox_ids
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        self.ctx.loop.call_soon_threadsafe(
            self.ctx.loop.call_later, 0.25, lambda: self.ctx.loop.create_task(self._flush_changes()))

    async def _flush_changes(self) -> None:
        with self._changed_lock:
            ids, self._changed = self._changed, set()
            self._flush_scheduled = False

        def load() -> tuple[list[dict], list[dict]]:
            with self.ctx.db.read() as session:
                rows = session.execute(select(Mailbox, Domain).join(Domain, Domain.id == Mailbox.domain_id)
                                       .where(Mailbox.id.in_(list(ids)[:500]))).all()
                boxes = [to_json(mailbox_info(m, d)) for m, d in rows]
                domains = {d.id: to_json(domain_info(d)) for _m, d in rows}
            return boxes, list(domains.values())

        if self._shutting_down:
            return     # the store's threads are going away; nobody is left to tell
        boxes, domains = await self.ctx.run(load)
        for info in boxes:
            self.ctx.events.publish("mailbox.changed", info)
        for info in domains:
            self.ctx.events.publish("domain.changed", info)

    # -- shutdown -------------------------------------------------------------------------
    async def shutdown(self) -> None:
        ctx = self.ctx
        self._shutting_down = True
        log.warning("stopping the service")
        if ctx.smtp is not None and hasattr(ctx.smtp, "stop"):
            with contextlib.suppress(Exception):
                await ctx.smtp.stop()
        for listener in ctx.listeners.values():
            with contextlib.suppress(Exception):
                await listener.stop()
        pop3 = getattr(ctx, "pop3", None)
        if pop3 is not None and hasattr(pop3, "close"):  # give back mailbox session locks
            with contextlib.suppress(Exception):
                await pop3.close()
        if self.admin_server is not None:
            await self.admin_server.stop()
        if getattr(ctx, "cluster", None) is not None:
            await asyncio.get_running_loop().run_in_executor(None, ctx.cluster.stop)

        def finish() -> None:
            # Each of these waits (for the store's threads, the database's connections, the
            # helper's exit): in a thread of its own, so the event loop never does (issue 14).
            ctx.reads.shutdown(wait=True, cancel_futures=True)
            ctx.executor.shutdown(wait=True, cancel_futures=True)
            ctx.auth_executor.shutdown(wait=False, cancel_futures=True)   # a PAM delay need not hold the exit
            if hasattr(ctx.auth, "close"):
                ctx.auth.close()
            ctx.db.dispose()
            if self.privhelper is not None:
                self.privhelper.close()
            self._remove_pid()
            from service.lograte import flush
            flush()   # the counts of client-triggered lines not written one by one

        last = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="shutdown")
        try:
            await asyncio.get_running_loop().run_in_executor(last, finish)
        finally:
            last.shutdown(wait=False)
        log.warning("service stopped")


def _safe_url(url: str) -> str:
    """A database URL without its password, for logs."""
    from service.db_password import shown_url
    return shown_url(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py service", description="Run the mail service in the foreground.")
    add_service_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "migrate-db":   # copy an installation's SQLite database to PostgreSQL
        from service.migrate_db import main as migrate_main
        return migrate_main(argv[1:])
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
