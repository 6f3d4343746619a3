"""Who may send where: recipient addresses, the local directory, relay rules and sending limits.

RFC 5321 §3.6.2 / RFC 2505 §2: a server relays only for its own users. Every address here is
judged by its *domain*: the tricks that fooled old relays (percent hack, source routes, ``!``
paths, quoted local parts) simply name an unknown local mailbox or a foreign domain, and both are
refused at RCPT.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from core.db import Database
from core.errors import Invalid
from core.names import normalize_domain
from core.parsing import Network, in_networks, parse_networks, parse_rate
from core.tables import Domain, Mailbox
from service.counters import Counters
from service.event_bus import Publisher
from service.live_settings import SettingsReader
from service.workers import Runs

log = logging.getLogger(__name__)

# Characters that make a local part a routing instruction rather than a mailbox name.
_ROUTING = re.compile(r'[%!@"\\:]')
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Address:
    """A parsed envelope address: its local part and its domain (IDNA ASCII, or a [literal])."""

    text: str
    local: str
    domain: str

    @property
    def is_literal(self) -> bool:
        return self.domain.startswith("[")


def parse_address(text: str) -> Address:
    """Split ``local@domain`` at the last '@'; Invalid for unqualified or malformed addresses."""
    if "@" not in text:
        raise Invalid(f"'{text}' is not fully qualified; write name@domain.")
    local, _, domain = text.rpartition("@")
    if not local or not domain:
        raise Invalid(f"'{text}' is not an address.")
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            raise Invalid(f"'{domain}' is not an address literal.") from None
        return Address(text, local, domain.lower())
    try:
        name = normalize_domain(domain)
    except Invalid:
        raise Invalid(f"'{domain}' is not a domain name.") from None
    return Address(text, local, name)


def same_address(a: str, b: str) -> bool:
    """Compare two addresses as this server stores them: local part and domain without case."""
    try:
        pa, pb = parse_address(a), parse_address(b)
    except Invalid:
        return False
    return pa.local.lower() == pb.local.lower() and pa.domain == pb.domain


@dataclass(frozen=True)
class LocalMailbox:
    """A local recipient: enough to deliver and to check the quota at RCPT."""

    id: int
    address: str
    quota_bytes: int | None


class Directory:
    """The local domains and mailboxes, cached for a few seconds and dropped on every change event
    (its owner subscribes ``on_event`` to the service's events)."""

    def __init__(self, db: Database, settings: SettingsReader, workers: Runs) -> None:
        self.db = db
        self.settings = settings
        self.workers = workers
        self._domains: frozenset[str] | None = None
        self._domains_at = 0.0
        self._boxes: dict[tuple[str, str], tuple[float, LocalMailbox | None]] = {}
        self._postmaster_warned = ""

    def on_event(self, name: str, data: Any) -> None:
        """A change event: drop what it may have made stale."""
        if name == "domain.changed":
            return   # a lock or new counters: neither changes where mail goes
        if name == "mailbox.changed" and isinstance(data, dict) and "address" in data:
            # A lock, a quota, or (four times a second while mail arrives) new counters: only
            # this mailbox's cached quota can be stale.
            local, _, domain = str(data["address"]).rpartition("@")
            self._boxes.pop((domain, local.lower()), None)
            return
        if name.startswith(("domain.", "mailbox.")):
            self.invalidate()

    def invalidate(self) -> None:
        self._domains = None
        self._boxes.clear()

    def _load_domains(self) -> frozenset[str]:
        with self.db.read() as session:
            return frozenset(session.scalars(select(Domain.name)))

    async def local_domains(self) -> frozenset[str]:
        now = time.monotonic()
        if self._domains is None or now - self._domains_at > CACHE_SECONDS:
            self._domains = await self.workers.run(self._load_domains)
            self._domains_at = now
        return self._domains

    async def is_local(self, domain: str) -> bool:
        return domain in await self.local_domains()

    def _load_box(self, domain: str, name: str) -> LocalMailbox | None:
        with self.db.read() as session:
            row = session.execute(
                select(Mailbox.id, Mailbox.name, Mailbox.quota_bytes).join(Domain, Domain.id == Mailbox.domain_id)
                .where(Domain.name == domain, Mailbox.name == name)
            ).first()
        return LocalMailbox(row.id, f"{row.name}@{domain}", row.quota_bytes) if row else None

    async def mailbox(self, address: Address) -> LocalMailbox | None:
        """The local mailbox ``address`` names, or None (routing characters never name one)."""
        local = address.local.lower()
        if _ROUTING.search(local) or not local.isascii():
            return None
        key = (address.domain, local)
        now = time.monotonic()
        hit = self._boxes.get(key)
        if hit is not None and now - hit[0] <= CACHE_SECONDS:
            return hit[1]
        box = await self.workers.run(self._load_box, address.domain, local)
        if len(self._boxes) > 10000:
            self._boxes.clear()
        self._boxes[key] = (now, box)
        return box

    def _load_postmaster(self, domain: str | None, chosen: str) -> LocalMailbox | None:
        """The mailbox named by ``chosen`` (an address) if it exists; else the oldest mailbox of
        ``domain``, or for a bare <postmaster> of the oldest domain."""
        query = (select(Mailbox.id, Mailbox.name, Mailbox.quota_bytes, Domain.name.label("domain"))
                 .join(Domain, Domain.id == Mailbox.domain_id))
        with self.db.read() as session:
            row = None
            if chosen:
                local, _, chosen_domain = chosen.rpartition("@")
                row = session.execute(query.where(Domain.name == chosen_domain, Mailbox.name == local.lower())).first()
                if row is None and self._postmaster_warned != chosen:   # once per value, not per message
                    self._postmaster_warned = chosen
                    log.warning("postmaster_mailbox %s is not a mailbox here; postmaster mail goes to "
                                "the domain's first mailbox", chosen)
            if row is None and domain is not None:
                row = session.execute(query.where(Domain.name == domain).order_by(Mailbox.id).limit(1)).first()
            if row is None and domain is None:
                row = session.execute(query.order_by(Domain.id, Mailbox.id).limit(1)).first()
        return LocalMailbox(row.id, f"{row.name}@{row.domain}", row.quota_bytes) if row else None

    async def postmaster(self, domain: str | None) -> LocalMailbox | None:
        """Where mail for postmaster@``domain`` (or a bare <postmaster>) goes when no mailbox has
        that name (RFC 5321 §4.5.1: every SMTP server accepts it): the postmaster_mailbox setting,
        else the domain's first mailbox."""
        chosen = str(self.settings.get("postmaster_mailbox") or "")
        key = (domain or "", "\0postmaster")   # cannot collide with a mailbox name
        now = time.monotonic()
        hit = self._boxes.get(key)
        if hit is not None and now - hit[0] <= CACHE_SECONDS:
            return hit[1]
        box = await self.workers.run(self._load_postmaster, domain, chosen)
        self._boxes[key] = (now, box)
        return box

    def _load_usage(self, mailbox_id: int) -> int:
        with self.db.read() as session:
            return int(session.scalar(select(Mailbox.total_bytes).where(Mailbox.id == mailbox_id)) or 0)

    async def usage(self, mailbox_id: int) -> int:
        """Bytes the mailbox holds now (not cached: the quota check needs the live figure)."""
        return await self.workers.run(self._load_usage, mailbox_id)


class RelayPolicy:
    """Closed by default: relay for authenticated users and allow-listed networks, nobody else."""

    def __init__(self, settings: SettingsReader) -> None:
        self.settings = settings
        self._text: str | None = None
        self._networks: tuple[Network, ...] = ()

    def networks(self) -> tuple[Network, ...]:
        text = str(self.settings.get("relay_networks") or "")
        if text != self._text:
            self._networks, self._text = parse_networks(text), text
        return self._networks

    def may_relay(self, client_ip: str, *, authenticated: bool) -> bool:
        if authenticated and self.settings.get("relay_authenticated"):
            return True
        return in_networks(client_ip, self.networks())


class SendingLimit:
    """Recipients per time window for each authenticated user (a hijacked account stops here)."""

    def __init__(self, settings: SettingsReader, counters: Counters, events: Publisher) -> None:
        self.settings = settings
        self.counters = counters
        self.events = events
        self._sent: dict[str, collections.deque[float]] = {}
        self._warned: dict[str, float] = {}

    def allow(self, login: str, count: int = 1) -> bool:
        """Take ``count`` recipients from ``login``'s budget; False (and the admin told) when empty."""
        limit, window = parse_rate(self.settings.get("send_rate_limit"))
        if limit <= 0:
            return True
        now = time.monotonic()
        sent = self._sent.setdefault(login, collections.deque())
        while sent and sent[0] <= now - window:
            sent.popleft()
        if len(sent) + count > limit:
            if now - self._warned.get(login, -1e18) > window:
                self._warned[login] = now
                log.warning("sending limit: %s reached %d recipients in %d s; further mail refused "
                            "(a hijacked account?)", login, limit, window)
                self.counters.incr("smtp_rate_limited")
                self.events.publish("smtp.rate_limited", {"login": login, "limit": limit, "window": window})
            return False
        sent.extend([now] * count)
        return True
