"""Change events between service nodes that share one PostgreSQL database (DESIGN §8).

Every change event a node publishes on its EventBus (domain added, counters moved, settings
changed, ban made ...) also goes out as ``NOTIFY pop3svc_events, '<json>'``; every node LISTENs
on that channel and re-publishes what other nodes sent into its own EventBus, so a console
connected to any node sees a change made through any other. PostgreSQL does the fan-out; there
is no membership list and no home-made protocol: a node that is down simply misses events, and
its consoles reload when they reconnect, as they do after any restart.

Two daemon threads per node, each with a connection of its own outside the pool: one LISTENs
(``psycopg`` delivers notifications between transactions, so it must not be a pooled one), one
sends, so a slow database never blocks the event loop. Both reconnect on their own.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import secrets
import socket
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from core.db import Database
from core.store import MailStore
from service.counters import Counters
from service.event_bus import EventBus
from service.live_settings import LiveSettings
from service.throttle import LoginThrottle
from service.workers import Runs

log = logging.getLogger(__name__)

CHANNEL = "pop3svc_events"
MAX_PAYLOAD = 7900          # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
# Events about this node alone (its listeners, its log): not news for the other nodes.
LOCAL_ONLY = frozenset({"service.state", "log.recent"})


def psycopg_conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    u = make_url(url)
    params = {"host": u.host, "port": u.port, "user": u.username, "password": u.password, "dbname": u.database}
    params.update({k: v for k, v in u.query.items() if isinstance(v, str)})
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


class EventRelay:
    """Sends this node's change events to the other nodes and publishes theirs here."""

    def __init__(self, url: str, *, publish: Callable[[str, Any], None], loop: asyncio.AbstractEventLoop,
                 subscribe: Callable[[Callable[[str, Any], None]], Any], node: str | None = None,
                 on_receive: Callable[[str], None] | None = None) -> None:
        self.conninfo = psycopg_conninfo(url)
        self.node = node or f"{socket.gethostname()[:40]}:{secrets.token_hex(4)}"
        self._publish = publish
        self._on_receive = on_receive
        self._subscribe = subscribe
        self._loop = loop
        self._outbox: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.listening = threading.Event()
        self._relaying = False
        self._threads: list[threading.Thread] = []
        self._unsubscribe: Callable[[], None] | None = None
        # name → callbacks run on the loop before a remote event is published here (side effects:
        # reload settings, forget cached paths ...). Names starting with "node." are internal:
        # handled, never published to admin-channel subscribers.
        self.handlers: dict[str, list[Callable[[Any], None]]] = {}
        self.received = 0
        self.sent = 0

    # -- life cycle -----------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Start both threads; returns once LISTEN is in place (or after ``timeout``)."""
        self._unsubscribe = self._subscribe(self._on_local_event)
        for target, name in ((self._listen_loop, "cluster-listen"), (self._send_loop, "cluster-notify")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        if not self.listening.wait(timeout):
            log.error("cluster events: cannot LISTEN yet; changes made on other nodes show up after a reconnect")
        log.info("cluster events: node %s listening on channel %s", self.node, CHANNEL)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def on(self, name: str, callback: Callable[[Any], None]) -> None:
        """Run ``callback(data)`` on the loop when another node sends ``name``."""
        self.handlers.setdefault(name, []).append(callback)

    # -- sending --------------------------------------------------------------------------
    def _on_local_event(self, name: str, data: Any) -> None:
        if self._relaying or name in LOCAL_ONLY:
            return  # an event from another node, or one about this node alone
        self.send(name, data)

    def send(self, name: str, data: Any) -> None:
        """Tell the other nodes (thread-safe, never blocks)."""
        payload = json.dumps({"node": self.node, "event": name, "data": data}, default=str, separators=(",", ":"))
        if len(payload.encode()) > MAX_PAYLOAD:
            log.warning("cluster events: the %s event is too large for NOTIFY (%d bytes); other nodes miss it",
                        name, len(payload))
            return
        self._outbox.put(payload)

    def _send_loop(self) -> None:
        conn = None
        pending: str | None = None
        while not self._stop.is_set():
            if pending is None:
                pending = self._outbox.get()
                if pending is None:
                    break
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, application_name="pop3svc-notify")
                conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, pending))
                self.sent += 1
                pending = None
            except Exception as exc:  # the database went away: keep the event, reconnect shortly
                log.warning("cluster events: cannot NOTIFY (%s); retrying", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(1.0)
        if conn is not None:
            conn.close()

    # -- receiving ------------------------------------------------------------------------
    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, application_name="pop3svc-listen") as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._received(note.payload)
            except Exception as exc:
                if self._stop.is_set():
                    break
                self.listening.clear()
                log.warning("cluster events: LISTEN connection lost (%s); reconnecting", exc)
                self._stop.wait(1.0)

    def _received(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message.get("node") == self.node:
                return
            name, data = str(message["event"]), message.get("data")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("cluster events: ignored a malformed notification")
            return
        self.received += 1
        self._loop.call_soon_threadsafe(self._deliver, name, data)

    def _deliver(self, name: str, data: Any) -> None:
        """On the loop: side effects first, then the admin-channel subscribers of this node."""
        if self._on_receive is not None:
            self._on_receive(name)
        for callback in self.handlers.get(name, []):
            try:
                callback(data)
            except Exception:
                log.exception("cluster events: handler of %s failed", name)
        if name.startswith("node."):
            return
        self._relaying = True
        try:
            self._publish(name, data)
        finally:
            self._relaying = False


def relay_for(db: Database, events: EventBus, counters: Counters,
              loop: asyncio.AbstractEventLoop) -> EventRelay | None:
    """The relay of a service on PostgreSQL (None on SQLite: one node, nothing to relay); not yet
    started."""
    if not db.is_postgres:
        return None
    return EventRelay(db.url, publish=events.publish, loop=loop, subscribe=events.subscribe,
                      on_receive=lambda _name: counters.incr("cluster.events_received"))


def follow_other_nodes(relay: EventRelay, *, settings: LiveSettings, workers: Runs, store: MailStore,
                       throttle: LoginThrottle, loop: asyncio.AbstractEventLoop) -> None:
    """Wire what a change made on another node means for this one."""

    def settings_changed(_data: Any) -> None:
        async def reload() -> None:
            # Both read the database or files (the auth provider's, TLS's): off the loop (issue 14).
            try:
                await workers.run(settings.reload)
                await workers.run(settings.apply)
            except Exception as exc:   # the database went away: the next change brings them
                log.error("cluster events: cannot reload the settings another node changed: %s", exc)
        loop.create_task(reload())

    def forget_targets(_data: Any) -> None:   # delivery's cached paths of deleted mailboxes
        store.forget()

    def with_dict(method: Callable[[dict], None]) -> Callable[[Any], None]:
        def call(data: Any) -> None:
            if isinstance(data, dict):
                method(data)
        return call

    relay.on("settings.changed", settings_changed)
    relay.on("domain.deleted", forget_targets)
    relay.on("mailbox.deleted", forget_targets)
    relay.on("ban.added", with_dict(throttle.remote_ban))
    relay.on("ban.lifted", with_dict(throttle.remote_lift))
    relay.on("node.logon_failed", with_dict(throttle.remote_failure))
    relay.on("node.logon_ok", with_dict(throttle.remote_success))
