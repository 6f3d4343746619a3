"""Failed-logon throttling shared by POP3 and SMTP AUTH (DESIGN §6).

Failures are counted in memory per address and per login name within a window. Each failure
makes the next answer slower (an escalating delay); past a limit the address or the name is
banned for a while. Bans live in the ``bans`` table, so every node sharing the database honours
them and the admin channel can list and lift them; ``is_banned`` reads an in-memory copy that is
refreshed every few seconds, because the Listener calls it for every connection. Addresses on
the allow-list (``throttle_allow``: loopback by default, like fail2ban's ``ignoreip``, plus e.g.
the office network) are never delayed or banned.

A login name is counted in its one canonical spelling (``core.names.login_key``: case, trailing
dot, full-width or mathematical letters, IDNA), so ``ALICE@Example.COM.`` and ``alice@example.com``
share one budget. So that a guesser cannot lock the real user out everywhere:
- failures from a single address ban that address, never the login name;
- a login name is banned only after failures from at least two addresses (a distributed guess),
  and even then not for the networks it logged on from successfully (within ``KNOWN_DAYS``):
  the real user's own address keeps working.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select

from core.db import Database, affected_rows
from core.errors import database_error
from core.names import login_key
from core.parsing import Network, in_networks, parse_networks
from core.tables import Ban
from service.counters import Counters
from service.event_bus import Publisher
from service.listeners import client_key
from service.live_settings import SettingsReader
from service.workers import Runs

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0      # how stale the ban cache may be (bans made by another node)
MAX_DELAY = 15.0           # the delay stops growing here
KNOWN_DAYS = 30            # a network a login logged on from stays exempt from its login ban this long
KNOWN_PER_LOGIN = 16       # networks remembered per login name


class Peers(Protocol):
    """The other service nodes on a shared database (service.cluster.EventRelay), told of logons."""

    def send(self, name: str, data: Any) -> None: ...


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass
class _Failures:
    count: int
    first: float
    addresses: set[str] | None = None   # login names: the networks the failures came from (bounded)


# The network an address stands for: itself for IPv4, its /64 for IPv6 (one host's range). The
# same mapping counts connections in the listeners, so it is defined once, there.
network_key = client_key


class LoginThrottle:
    """Counts failed logons, delays the answers, and bans addresses and login names."""

    def __init__(self, db: Database, settings: SettingsReader, workers: Runs, counters: Counters,
                 events: Publisher, *, peers: Peers | None = None) -> None:
        self.db = db
        self.settings = settings
        self.workers = workers
        self.counters = counters
        self.events = events
        self.peers = peers   # None: this node alone (SQLite)
        self._by_address: dict[str, _Failures] = {}
        self._by_login: dict[str, _Failures] = {}
        self._known: dict[str, dict[str, float]] = {}    # login -> network -> last successful logon
        self._banned: dict[tuple[str, str], float] = {}   # (kind, value) -> expiry (time.time())
        self._local: dict[tuple[str, str], float] = {}    # bans made here: kept across a refresh
        self._refreshed = 0.0
        self._refreshing = False
        self._changes = 0    # bans lifted or relayed here: a list read before one of them is stale
        self._allow_text: str | None = None
        self._allow: tuple[Network, ...] = ()
        self._refresh_now()

    # -- queries --------------------------------------------------------------------------
    def allowed(self, address: str) -> bool:
        """Is ``address`` on the allow-list (never delayed or banned)?"""
        text = str(self.settings.get("throttle_allow") or "")
        if text != self._allow_text:
            self._allow_text = text
            self._allow = parse_networks(text)
        return in_networks(address, self._allow)

    def is_banned(self, address: str) -> bool:
        """Is this address banned now? Cheap and synchronous: the Listener asks on every accept."""
        self._maybe_refresh()
        return self._active(("address", client_key(address))) and not self.allowed(address)

    def is_login_banned(self, login: str, address: str = "") -> bool:
        """Is this login name banned now for a logon from ``address``? Never for allow-listed
        addresses, nor for a network the login logged on from successfully before."""
        self._maybe_refresh()
        if address and (self.allowed(address) or self.known(login, address)):
            return False
        return self._active(("login", _norm(login)))

    def known(self, login: str, address: str) -> bool:
        """Did ``login`` log on successfully from this address's network within KNOWN_DAYS?"""
        seen = self._known.get(_norm(login), {}).get(network_key(address))
        return seen is not None and time.time() - seen < KNOWN_DAYS * 86400

    def _active(self, key: tuple[str, str]) -> bool:
        expiry = self._banned.get(key) or self._local.get(key)
        if expiry is None:
            return False
        if expiry <= time.time():
            self._banned.pop(key, None)
            self._local.pop(key, None)
            return False
        return True

    # -- events ---------------------------------------------------------------------------
    async def delay(self, address: str, login: str | None) -> None:
        """Sleep before answering a failed logon: the base delay, doubled per recent failure."""
        if self.allowed(address):
            return
        base = int(self.settings.get("throttle_delay_ms")) / 1000.0
        if base <= 0:
            return
        now = time.time()
        count = max(self._count(self._by_address, client_key(address), now),
                    self._count(self._by_login, _norm(login), now) if login else 0, 1)
        await asyncio.sleep(min(MAX_DELAY, base * 2 ** min(count - 1, 16)))

    async def failure(self, address: str, login: str | None) -> str | None:
        """Record a failed logon; bans the address or the login past the limit. Returns the kind
        of ban made ("address" or "login"), or None."""
        if self.allowed(address):
            return None
        now = time.time()
        limit = int(self.settings.get("throttle_failures"))
        made = None
        if self.peers is not None:   # other nodes count it too: the limit holds across the cluster
            self.peers.send("node.logon_failed", {"address": address, "login": login or ""})
        key = client_key(address)   # an IPv6 client counts (and is banned) by its /64
        if self._bump(self._by_address, key, now) >= limit:
            self._by_address.pop(key, None)
            await self._ban("address", key, limit)
            made = "address"
        if login:
            key = _norm(login)
            # One address alone never bans the name (its address ban stops it): the real user
            # must not be locked out by a guesser; failures from several addresses do.
            if self._bump(self._by_login, key, now, address) >= limit and len(self._by_login[key].addresses or ()) >= 2:
                self._by_login.pop(key, None)
                await self._ban("login", key, limit)
                made = made or "login"
        return made

    async def success(self, address: str, login: str | None) -> None:
        """A correct logon forgets the failures of that login name and remembers its network,
        which its login ban then spares."""
        if login:
            key = _norm(login)
            self._by_login.pop(key, None)
            seen = self._known.get(key, {}).get(network_key(address))
            self._remember(key, address)
            # Tell the other nodes about a new network (or one not seen for a day), not every logon.
            if self.peers is not None and (seen is None or time.time() - seen > 86400):
                self.peers.send("node.logon_ok", {"address": address, "login": key})

    def _remember(self, key: str, address: str) -> None:
        if not address:
            return
        networks = self._known.pop(key, {})   # re-inserted last: the dict stays in recency order
        networks[network_key(address)] = time.time()
        if len(networks) > KNOWN_PER_LOGIN:
            del networks[min(networks, key=networks.__getitem__)]
        self._known[key] = networks
        if len(self._known) > 100_000:   # bounded: forget the least recent half
            for old in list(self._known)[: len(self._known) // 2]:
                del self._known[old]

    def _count(self, table: dict[str, _Failures], key: str, now: float) -> int:
        entry = table.get(key)
        if entry is None:
            return 0
        if now - entry.first > int(self.settings.get("throttle_window")):
            del table[key]
            return 0
        return entry.count

    def _bump(self, table: dict[str, _Failures], key: str, now: float, address: str | None = None) -> int:
        count = self._count(table, key, now)
        if count == 0:
            table[key] = _Failures(0, now, set() if address is not None else None)
            if len(table) > 100_000:  # a flood of distinct names: forget the oldest half
                for old in sorted(table, key=lambda k: table[k].first)[: len(table) // 2]:
                    if old != key:
                        del table[old]
        entry = table[key]
        entry.count += 1
        if address is not None and entry.addresses is not None and len(entry.addresses) < 64:
            entry.addresses.add(network_key(address))
        return entry.count

    async def _ban(self, kind: str, value: str, failures: int) -> None:
        seconds = int(self.settings.get("ban_duration"))
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        self._local[(kind, value)] = expires.timestamp()
        reason = f"{failures} failed logons"
        log.warning("banned %s %s for %d s after %s", kind, value, seconds, reason)
        self.counters.incr("throttle.bans")
        try:
            await self.workers.run(self._store_ban, kind, value, reason, failures, expires)
        except Exception as exc:  # the in-memory ban still holds on this node
            refusal = database_error(exc)
            if refusal is None:
                log.exception("could not store the ban of %s %s", kind, value)
            else:
                log.warning("could not store the ban of %s %s: %s", kind, value, refusal.message)
        self.events.publish("ban.added", {"kind": kind, "value": value, "expires_at": expires.isoformat()})

    def _store_ban(self, kind: str, value: str, reason: str, failures: int, expires: datetime) -> None:
        with self.db.write() as session:
            row = session.scalars(select(Ban).where(Ban.kind == kind, Ban.value == value)).first()
            if row is None:
                session.add(Ban(kind=kind, value=value, reason=reason, failures=failures, expires_at=expires))
            else:
                row.reason, row.failures, row.expires_at = reason, row.failures + failures, expires
                row.created_at = datetime.now(UTC)

    # -- other nodes (service.cluster relays these; issue 8) --------------------------------
    def remote_failure(self, data: dict) -> None:
        """A failed logon on another node counts here too (no ban from here: the next local
        failure past the limit bans, and the node that reached it has banned already)."""
        now = time.time()
        address, login = str(data.get("address") or ""), str(data.get("login") or "")
        if address and not self.allowed(address):
            self._bump(self._by_address, client_key(address), now)
            if login:
                self._bump(self._by_login, _norm(login), now, address)

    def remote_success(self, data: dict) -> None:
        """A login logged on at another node: its network is spared here too."""
        login = str(data.get("login") or "")
        if login:
            self._by_login.pop(_norm(login), None)
            self._remember(_norm(login), str(data.get("address") or ""))

    def remote_ban(self, data: dict) -> None:
        """Another node banned an address or login: honour it now, not at the next refresh."""
        try:
            expiry = datetime.fromisoformat(str(data["expires_at"])).timestamp()
            self._banned[(str(data["kind"]), str(data["value"]))] = expiry
            self._changes += 1
        except (KeyError, ValueError):
            pass

    def remote_lift(self, data: dict) -> None:
        """Another node lifted a ban."""
        value = str(data.get("value") or "")
        self._changes += 1
        for kind in ("address", "login"):
            for key in {value, _norm(value)}:
                self._banned.pop((kind, key), None)
                self._local.pop((kind, key), None)
        self._by_address.pop(value, None)
        self._by_login.pop(_norm(value), None)

    # -- the ban list (admin channel) -----------------------------------------------------
    def list_bans(self) -> list[dict]:
        """Current bans, newest first: kind, value, reason, failures, created_at, expires_at."""
        now = datetime.now(UTC)
        with self.db.read() as session:
            rows = session.scalars(select(Ban).order_by(Ban.created_at.desc())).all()
            bans = [{"kind": r.kind, "value": r.value, "reason": r.reason, "failures": r.failures,
                     "created_at": _aware(r.created_at).isoformat(), "expires_at": _aware(r.expires_at).isoformat()}
                    for r in rows if _aware(r.expires_at) > now]
        return bans

    def lift(self, value: str) -> int:
        """Lift every ban (address or login) on ``value``; returns how many were lifted."""
        value = str(value).strip()
        keys = {value, _norm(value), client_key(value)}   # an IPv6 address lifts its /64
        self._changes += 1
        with self.db.write() as session:
            lifted = affected_rows(session.execute(delete(Ban).where(Ban.value.in_(keys))))
        for kind in ("address", "login"):
            for key in keys:
                cached = [self._banned.pop((kind, key), None), self._local.pop((kind, key), None)]
                if any(c is not None for c in cached) and lifted == 0:
                    lifted = 1
        self._by_address.pop(value, None)
        self._by_login.pop(_norm(value), None)
        if lifted:
            log.info("lifted the ban on %s", value)
            self.events.publish("ban.lifted", {"value": value})
        return lifted

    # -- the cache ------------------------------------------------------------------------
    def _maybe_refresh(self) -> None:
        if self._refreshing or time.monotonic() - self._refreshed < REFRESH_SECONDS:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._refresh_now()
            return
        self._refreshing = True
        loop.create_task(self._refresh_async())

    async def _refresh_async(self) -> None:
        changes = self._changes
        refreshed = time.monotonic()
        try:
            loaded = await self.workers.run(self._load)
            if self._changes == changes:
                self._banned = loaded
            else:
                # A ban was lifted or relayed while the list was read in a worker: the list may
                # predate it (a lifted ban would come back for a refresh period). Keep the cache the
                # change made, and read again at the next connection.
                refreshed = 0.0
        except Exception:
            log.exception("could not read the ban list")
        finally:
            self._refreshed = refreshed
            self._refreshing = False

    def _refresh_now(self) -> None:
        try:
            self._banned = self._load()
        except Exception:
            log.exception("could not read the ban list")
        self._refreshed = time.monotonic()

    def _load(self) -> dict[tuple[str, str], float]:
        now = datetime.now(UTC)
        with self.db.read() as session:
            rows = session.execute(select(Ban.kind, Ban.value, Ban.expires_at)).all()
        if any(_aware(e) <= now for _k, _v, e in rows):  # tidy up: expired bans are history
            try:
                with self.db.write() as session:
                    session.execute(delete(Ban).where(Ban.expires_at <= now))
            except Exception as exc:   # a full disk or a busy database: tidy up next time
                if database_error(exc) is None:
                    raise
        return {(k, v): _aware(e).timestamp() for k, v, e in rows if _aware(e) > now}


def _norm(login: str | None) -> str:
    """The throttle's key for a login name: its one canonical spelling (core.names)."""
    return login_key(login)
