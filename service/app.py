"""The composition root: ``build(config, process)`` makes every part of one mail service process
with explicit arguments, and the ``Runtime`` it returns starts them in order and stops them in
reverse. Read ``build`` top to bottom to see every part and what it depends on.

Start order (service/daemon.py drives it, dropping root in between):
    build           database, settings, store, auth, parts, listeners (unbound)   [blocking]
    prepare         other nodes' events, mail root check and repair, threads      [blocking]
    open_admin      the admin channel (Unix socket, TCP if configured)
    bind            the mail listeners' sockets (while still privileged)
    serve           accept mail connections, the outgoing queue, watchers
    stop            the reverse

Nothing here is global: a process may build a Runtime of its own (one per worker process sharing
the listeners later; a listener's socket can then be handed in before ``bind``).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core.admin import Admin
from core.auth.keystore import ServerKey, choose_keystore
from core.auth.local import SystemAccounts
from core.catalog import MAIL_LISTENERS, TlsMode
from core.db import Database, sqlite_url
from core.errors import Invalid, MailError
from core.hostname import is_loopback_name
from core.ipc.protocol import socket_path
from core.paths import can_bind_privileged
from core.settings import Settings, default_hostname
from core.store import MailStore
from core.tables import Setting
from core.tokens import AdminTokens
from service.auth_methods import AVAILABLE_METHODS, AuthMethods
from service.change_events import CounterEvents
from service.cluster import EventRelay, follow_other_nodes, relay_for
from service.control import ListenerAddresses, ListenerControl
from service.counters import Counters
from service.db_password import database_url, shown_url
from service.disk import DiskWatch
from service.event_bus import EventBus
from service.history import History, node_name
from service.ipc.audit import PendingAudit
from service.ipc.scope import AdminScope
from service.ipc.server import AdminServer
from service.ipc.tcp import AdminTcpListener
from service.listeners import ConnectionBudget, Listener
from service.live_settings import LiveSettings
from service.pop3.lock import MailboxLocks
from service.pop3.server import Pop3Server
from service.smtp.server import SmtpServer
from service.status import ServiceStatus
from service.throttle import LoginThrottle
from service.tls import TlsMaterial
from service.workers import Workers

log = logging.getLogger("pop3svc")

VERSION = "0.1.0"
UNPRIVILEGED_PORTS = {spec.port_setting: spec.unprivileged_port for spec in MAIL_LISTENERS}
TLS_WATCH_SECONDS = 60


class StartupError(Exception):
    """The service cannot start; the message says why, for the administrator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ServiceConfig:
    """What the command line gives (DESIGN §2): lasts for this run; stored settings are changed
    through the admin channel."""

    data_dir: Path
    db_url: str | None = None
    db_password_file: Path | None = None
    bind: str | None = None                                    # None: the bind_address setting
    ports: Mapping[str, int] = field(default_factory=dict)     # listener name → port (0: off)
    user: str | None = None                                    # started as root: run as this user


@dataclass(frozen=True)
class Process:
    """What the process around the service provides (service/daemon.py)."""

    loop: asyncio.AbstractEventLoop
    budget: ConnectionBudget                         # all listeners' connections, under the open-file limit
    set_log_level: Callable[[int], None]             # the logging setting (0-3)
    request_shutdown: Callable[[bool], None]         # service.shutdown; True: start again
    accounts: SystemAccounts | Any = None            # the privileged helper's client, started as root
    clock: Callable[[], float] = time.time           # the per-minute history's clock (tests move it)


def database_for(config: ServiceConfig) -> str:
    """The database URL: ``--db-url`` (its password from a file or the environment), else SQLite
    in the data directory."""
    try:
        if config.db_url:
            return database_url(config.db_url, password_file=config.db_password_file)
        if config.db_password_file is not None:
            raise Invalid("--db-password-file needs --db-url (the default SQLite database has no password).")
        return sqlite_url(config.data_dir / "pop3svc.db")
    except Invalid as exc:
        raise StartupError(exc.message) from None


def first_run_settings(db: Database, data_dir: Path) -> dict[str, Any]:
    """Fix, once and explicitly, what a new installation chooses: mail root, key store, host name."""
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


def build(config: ServiceConfig, process: Process) -> Runtime:
    """Every part of one service process, made and wired; nothing started, nothing bound.
    Blocking (database, key files, PEM files): call it off the event loop. Raises StartupError."""
    loop, data_dir = process.loop, config.data_dir

    # -- the database and the settings -----------------------------------------------------
    url = database_for(config)
    db = Database(url)
    try:
        db.upgrade()
    except Exception as exc:
        raise StartupError(f"cannot open the database {shown_url(url)}: {exc}") from exc
    try:
        values = first_run_settings(db, data_dir)
    except MailError as exc:
        raise StartupError(exc.message) from exc
    process.set_log_level(int(values["logging"]))
    settings = LiveSettings(db, values, fallback_hostname=default_hostname())
    settings.on_change(lambda: process.set_log_level(int(settings.get("logging"))))

    # -- what every part shares ------------------------------------------------------------
    workers = Workers(loop)
    counters = Counters()
    events = EventBus(loop)
    store = MailStore(db, Path(values["mailroot"]), hostname=settings.hostname)
    counter_events = CounterEvents(db, events, workers, loop)
    store.on_change.append(counter_events.store_changed)

    # -- authentication and the admin operations -------------------------------------------
    try:
        key = ServerKey.load(data_dir, values["keystore"], create=True)
        auth = AuthMethods(db, settings, key, mailroot=store.root, accounts=process.accounts)
    except MailError as exc:
        raise StartupError(exc.message) from exc
    admin = Admin(db, store, auth=auth.provider, publish=events.publish, available_methods=AVAILABLE_METHODS,
                  sealer=auth.sealer)

    def admin_follows(provider: Any) -> None:   # `winpop set auth ...` reaches the admin operations too
        admin.auth = provider
    auth.on_switch(admin_follows)

    # -- the other nodes on a shared database, TLS, the logon throttle ---------------------
    relay = relay_for(db, events, counters, loop)
    tls = TlsMaterial(data_dir, settings.hostname, load=False)
    try:   # PEM files, perhaps a new self-signed certificate
        tls.configure(values["tls_cert"], values["tls_key"])
    except Exception as exc:  # bad PEM files: say so; plaintext listeners still run
        log.error("TLS is not available: %s (check the certificate and key settings)", exc)
    throttle = LoginThrottle(db, settings, workers, counters, events, peers=relay)   # bans from the database
    if relay is not None:
        follow_other_nodes(relay, settings=settings, workers=workers, store=store, throttle=throttle, loop=loop)

    # -- the protocol servers and their listeners ------------------------------------------
    listeners: dict[str, Listener] = {}
    pop3 = Pop3Server(loop=loop, store=store, auth=auth, tls=tls, throttle=throttle,
                      locks=MailboxLocks(db, lease_seconds=int(settings.get("pop3_lock_lease"))),
                      settings=settings, counters=counters, workers=workers)
    smtp = SmtpServer(loop=loop, db=db, store=store, data_dir=data_dir, settings=settings, workers=workers,
                      counters=counters, events=events, auth=auth, tls=tls, throttle=throttle, listeners=listeners,
                      sealer=auth.sealer)
    addresses = ListenerAddresses(settings, bind=config.bind, ports=config.ports)
    for listener in mail_listeners(pop3, smtp, tls=tls, throttle=throttle, settings=settings,
                                   addresses=addresses, budget=process.budget):
        listeners[listener.name] = listener

    # -- state, control and the admin channel ----------------------------------------------
    def disk_places() -> dict[str, Path]:
        found = {"data directory": data_dir, "mail root": store.root}
        if db.is_sqlite and db.engine.url.database:
            found = {"database": Path(db.engine.url.database).parent, **found}
        return found

    def disk_changed() -> None:   # status and pending audit exist by the first measurement (serve)
        events.publish("service.state", status.report())
        if pending_audit.entries:   # audit entries a full disk held back
            loop.create_task(pending_audit.flush())

    disk = DiskWatch(disk_places, workers.run, disk_changed)
    status = ServiceStatus(listeners, counters, disk, store)
    history = History(db=db, node=node_name(data_dir), counters=counters, disk=disk, run=workers.run,
                      clock=process.clock)
    control = ListenerControl(listeners, addresses, events, status.report)
    pending_audit = PendingAudit(workers, admin)
    tokens = AdminTokens(db)
    admin_tcp = AdminTcpListener(loop=loop, settings=settings, workers=workers, tls=tls, events=events,
                                 tokens=tokens, throttle=throttle, counters=counters, admin=admin)
    scope = AdminScope(version=VERSION, data_dir=data_dir, loop=loop, db=db, store=store, admin=admin,
                       settings=settings, workers=workers, stats=counters, events=events, status=status, tls=tls,
                       auth_methods=auth, throttle=throttle, smtp=smtp, listeners=listeners, control=control,
                       tokens=tokens, admin_tcp=admin_tcp, pending_audit=pending_audit, history=history,
                       request_shutdown=process.request_shutdown)
    admin_server = AdminServer(scope, socket_path(data_dir))

    # -- what a settings change means (after the log level, in this order) ----------------
    hostname = settings.hostname

    def follow_hostname() -> None:   # greetings, Received: and HELO follow it at once, no restart
        nonlocal hostname
        if settings.hostname != hostname:
            hostname = tls.hostname = settings.hostname
            log.warning("the server's host name is now %s", hostname)

    def follow_tls_files() -> None:
        if tls.available:
            with contextlib.suppress(Exception):
                tls.configure(settings.get("tls_cert"), settings.get("tls_key"))

    settings.on_change(follow_hostname)
    settings.on_change(auth.apply)                 # `winpop set auth ...`: switch the provider now
    settings.on_change(admin_server.apply_group)
    settings.on_change(follow_tls_files)

    return Runtime(db=db, store=store, settings=settings, workers=workers, events=events, auth=auth, relay=relay,
                   tls=tls, pop3=pop3, smtp=smtp, listeners=listeners, disk=disk, status=status,
                   admin_server=admin_server, counter_events=counter_events, history=history)


def mail_listeners(pop3: Pop3Server, smtp: SmtpServer, *, tls: TlsMaterial, throttle: LoginThrottle,
                   settings: LiveSettings, addresses: ListenerAddresses,
                   budget: ConnectionBudget) -> list[Listener]:
    """The POP3 and SMTP listeners whose port is not 0; the implicit-TLS ones only with TLS."""
    host = addresses.host()
    made = []
    for spec in MAIL_LISTENERS:   # core/catalog.py: name, protocol, TLS mode
        name, implicit = spec.name, spec.tls == TlsMode.IMPLICIT
        port = addresses.port(name)
        if port == 0 or (implicit and not tls.available):
            continue
        if spec.protocol == "pop3":
            factory, refusal = pop3.protocol_factory(implicit_tls=implicit), pop3.refusal
        else:
            factory, refusal = smtp.protocol_factory(name), smtp.refusal
        made.append(Listener(name, spec.protocol, host, port, factory, refusal=refusal,
                             ssl_context=tls.context if implicit else None,
                             limits=settings.limits, is_banned=throttle.is_banned, budget=budget))
    return made


class Runtime:
    """One built service: starts its parts in order and stops them in reverse."""

    def __init__(self, *, db: Database, store: MailStore, settings: LiveSettings, workers: Workers,
                 events: EventBus, auth: AuthMethods, relay: EventRelay | None, tls: TlsMaterial, pop3: Pop3Server,
                 smtp: SmtpServer, listeners: dict[str, Listener], disk: DiskWatch, status: ServiceStatus,
                 admin_server: AdminServer, counter_events: CounterEvents, history: History) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.workers = workers
        self.events = events
        self.auth = auth
        self.relay = relay
        self.tls = tls
        self.pop3 = pop3
        self.smtp = smtp
        self.listeners = listeners
        self.disk = disk
        self.status = status
        self.admin_server = admin_server
        self.counter_events = counter_events
        self.history = history
        self._tls_watch: asyncio.Task | None = None

    # -- start ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Blocking, before anything is served: hear the other nodes, check and repair the mail
        root, and start every worker thread (none is started on the loop later)."""
        if self.relay is not None:   # several nodes may share this database: relay change events (issue 8)
            self.relay.start()
        store = self.store
        try:
            store.check_root(create=not store.has_domains())
            # On a shared database a young unindexed file may be another node's delivery in flight.
            report = store.reconcile(orphan_min_age=0.0 if self.db.is_sqlite else 600.0)
            log.info("reconciled %d mailboxes", report.mailboxes_checked)
        except Exception as exc:   # the service still starts: the console and winpop say what is wrong
            log.error("the mail store needs attention: %s", getattr(exc, "message", exc))
        self.workers.start_threads()

    async def open_admin(self) -> None:
        """Open the admin channel; StartupError if it cannot be."""
        try:
            await self.admin_server.start()
        except (OSError, RuntimeError) as exc:
            raise StartupError(f"cannot open the admin channel at {self.admin_server.path}: {exc}") from exc

    def bind(self) -> None:
        """Bind every mail listener (while privileged); a failure is reported when it starts."""
        for listener in self.listeners.values():
            with contextlib.suppress(OSError):
                listener.bind()

    async def serve(self) -> None:
        """Accept mail connections, run the outgoing queue, watch disks and certificates."""
        for listener in self.listeners.values():
            try:
                await listener.start()
            except OSError as exc:
                log.error("listener %s: %s", listener.name, listener.error or exc)
        await self.smtp.start()
        self.disk.start()
        self.history.start()
        self.events.publish("service.state", self.status.report())
        self._tls_watch = asyncio.get_running_loop().create_task(self._watch_tls(), name="tls-watch")

    async def _watch_tls(self) -> None:
        """Pick up a renewed certificate within a minute, and repeat the expiry warning daily."""
        ticks = 0
        while True:
            await asyncio.sleep(TLS_WATCH_SECONDS)
            ticks += 1
            tls = self.tls
            if not tls.available:
                continue
            with contextlib.suppress(Exception):   # stat and read the PEM files: in a thread (issue 14)
                await self.workers.run(tls.refresh)
                if ticks % (24 * 60) == 0:
                    await self.workers.run(tls.warn_if_expiring, tls.cert_path)

    # -- stop -----------------------------------------------------------------------------
    async def stop(self) -> None:
        """Stop everything, in reverse: SMTP says 421 to its open sessions (RFC 5321 §3.8), the
        listeners close, POP3 gives back its mailbox locks, the admin channel closes; then, in a
        thread, the worker threads end and the database's connections go."""
        if self._tls_watch is not None:
            self._tls_watch.cancel()
        await self.disk.stop()
        self.counter_events.close()
        with contextlib.suppress(Exception):
            await self.smtp.stop()
        for listener in self.listeners.values():
            with contextlib.suppress(Exception):
                await listener.stop()
        with contextlib.suppress(Exception):   # give back mailbox session locks
            await self.pop3.close()
        await self.history.stop()              # the minute counted so far (needs the worker threads)
        await self.admin_server.stop()
        loop = asyncio.get_running_loop()
        if self.relay is not None:
            await loop.run_in_executor(None, self.relay.stop)

        def finish() -> None:
            # Each of these waits (for the store's threads, the database's connections): in a
            # thread of its own, so the event loop never does (issue 14).
            self.workers.shutdown()
            self.auth.close()
            self.db.dispose()

        await run_in_own_thread(finish)


async def run_in_own_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a fresh thread (the service's own pools may be gone) and wait for it."""
    last = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shutdown")
    try:
        await asyncio.get_running_loop().run_in_executor(last, fn)
    finally:
        last.shutdown(wait=False)
