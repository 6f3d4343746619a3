"""The SMTP client of outgoing mail: where a domain's mail goes (static route, smart host with its
sealed password, DNS MX with A/AAAA fallback) and the SMTP transactions that send one message to
one domain, with opportunistic STARTTLS and optional AUTH. What is due, retries and reports are
the queue's (service/smtp/queue.py).

DNS is asynchronous (``dns.asyncresolver``, on the event loop); the SMTP transaction is
blocking (smtplib) and the queue runs it in a worker thread.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from core.errors import Unavailable
from core.hostname import machine_name
from core.parsing import parse_dns_servers, parse_host_port, parse_routes
from core.sealer import Sealer

log = logging.getLogger(__name__)

TEST_MX_ENV = "POP3SVC_TEST_MX"   # "domain=127.0.0.1:port,..." replaces DNS (tests, labs)
CONNECT_TIMEOUT = 30.0
DNS_LIFETIME = 15.0      # seconds for one name's lookup, every server and retry included
MAX_ADDRESSES = 10       # servers tried per attempt: a hostile zone cannot hold a delivery for hours


@dataclass(frozen=True)
class Hop:
    """One server to try for a domain."""

    host: str
    port: int = 25
    auth: tuple[str, str] | None = None   # smart host credentials
    name: str = field(default="", compare=False)   # the MX name ``host`` (an address) came from


@dataclass(frozen=True)
class Route:
    """Where a domain's mail goes, or why it cannot go anywhere."""

    hops: list[Hop] = field(default_factory=list)
    error: str = ""           # set when there is no route
    permanent: bool = False   # the error will not heal (NXDOMAIN, null MX)
    status: str = "4.4.3"


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient in one attempt."""

    code: int          # SMTP reply code (2xx delivered, 4xx retry, 5xx failed); 0 = no connection
    text: str
    host: str = ""

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def status(self) -> str:
        """An RFC 3463 status code: from the reply when it has one, else from the class."""
        for word in self.text.split()[:2]:   # "550 5.1.1 ..." or "5.1.1 ..."
            if word.count(".") == 2 and word[0] in "245" and word.replace(".", "").isdigit():
                return word
        return "5.0.0" if self.permanent else "4.0.0" if self.code >= 400 else "4.4.1"


def order_mx(records: list[tuple[int, str]], rng: random.Random | None = None) -> list[str]:
    """MX names by preference, lowest first; equal preferences in random order (RFC 5321 §5.1)."""
    shuffle = (rng or random).shuffle
    by_preference: dict[int, list[str]] = {}
    for preference, name in records:
        by_preference.setdefault(preference, []).append(name)
    ordered: list[str] = []
    for preference in sorted(by_preference):
        group = list(dict.fromkeys(by_preference[preference]))
        shuffle(group)
        ordered.extend(group)
    return list(dict.fromkeys(ordered))


def _dns_problem(exc: BaseException) -> str:
    """A DNS failure in words an administrator can act on."""
    if isinstance(exc, dns.resolver.NoNameservers):
        return "no DNS server gave an answer (SERVFAIL or refused)"
    if isinstance(exc, dns.exception.Timeout):
        return "the DNS servers did not answer in time"
    if isinstance(exc, dns.resolver.NoResolverConfiguration):
        return "no DNS server is configured (set dns_servers or /etc/resolv.conf)"
    return f"{type(exc).__name__}: {exc}"


class MxResolver:
    """Static routes and ``POP3SVC_TEST_MX`` first, then the smart host, then DNS."""

    def __init__(self, *, routes: str = "", smarthost: str = "", smarthost_auth: tuple[str, str] | None = None,
                 dns_servers: str = "", dns_lifetime: float = DNS_LIFETIME,
                 environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.routes = parse_routes(env.get(TEST_MX_ENV, ""))
        self.routes.update(parse_routes(routes))
        self.smarthost = smarthost
        self.smarthost_auth = smarthost_auth
        self.dns_servers = parse_dns_servers(dns_servers)
        self.dns_lifetime = dns_lifetime

    def static_route(self, domain: str) -> Route | None:
        """The route that needs no DNS (static route, address literal, smart host), if any."""
        if domain in self.routes:
            return Route([Hop(h, p) for h, p in self.routes[domain]])
        if domain.startswith("["):
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            return Route([Hop(literal, 25)])
        if self.smarthost:
            host, port = parse_host_port(self.smarthost, 25)
            return Route([Hop(host, port, self.smarthost_auth)])
        if "*" in self.routes:
            return Route([Hop(h, p) for h, p in self.routes["*"]])
        return None

    async def route_async(self, domain: str) -> Route:
        """Where ``domain``'s mail goes; DNS lookups do not block the event loop."""
        return self.static_route(domain) or await self._dns(domain)

    def route(self, domain: str) -> Route:
        """The same, for a caller outside any event loop (a worker thread, a test)."""
        return self.static_route(domain) or asyncio.run(self._dns(domain))

    def _resolver(self) -> dns.asyncresolver.Resolver:
        """The system's resolver, or the servers of the ``dns_servers`` setting."""
        resolver = dns.asyncresolver.Resolver(configure=not self.dns_servers)
        if self.dns_servers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in self.dns_servers]
        resolver.lifetime = self.dns_lifetime
        resolver.timeout = min(resolver.timeout, self.dns_lifetime)
        return resolver

    async def _dns(self, domain: str) -> Route:
        """RFC 5321 §5.1: MX records by preference; none → the domain's own A/AAAA (implicit MX)."""
        try:
            resolver = self._resolver()
            answer = await resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            return Route(error=f"The domain {domain} does not exist (DNS NXDOMAIN).", permanent=True, status="5.1.2")
        except dns.resolver.NoAnswer:
            answer = None
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            return Route(error=f"DNS lookup of the MX of {domain} failed: {_dns_problem(exc)}.", status="4.4.3")
        if answer is None:   # no MX: the domain itself is the mail server (implicit MX)
            addresses, trouble = await self._addresses(resolver, domain)
            if addresses:
                return Route([Hop(a, 25, name=domain) for a in addresses[:MAX_ADDRESSES]])
            if trouble:
                return Route(error=f"DNS lookup of {domain} failed: {trouble}.", status="4.4.3")
            return Route(error=f"The domain {domain} has no mail server (no MX, A or AAAA record).",
                         permanent=True, status="5.1.2")
        names = order_mx([(r.preference, r.exchange.to_text(omit_final_dot=True))
                          for r in answer if r.exchange != dns.name.root])
        if not names:   # RFC 7505 §3: a null MX ("0 .") says the domain accepts no mail
            return Route(error=f"The domain {domain} accepts no mail (null MX).", permanent=True, status="5.1.10")
        names = names[:MAX_ADDRESSES]   # a hostile zone's thousand MX records are not a thousand lookups
        found = await asyncio.gather(*(self._addresses(resolver, name) for name in names))
        hops: list[Hop] = []
        troubles: list[str] = []
        for name, (addresses, trouble) in zip(names, found, strict=True):
            hops.extend(Hop(a, 25, name=name) for a in addresses)
            if trouble:
                troubles.append(f"{name}: {trouble}")
        if hops:
            return Route(hops[:MAX_ADDRESSES])
        if troubles:
            return Route(error=f"DNS lookup of the mail servers of {domain} failed ({'; '.join(troubles)}).",
                         status="4.4.3")
        return Route(error=f"The mail servers of {domain} ({', '.join(names)}) have no address.",
                     permanent=True, status="5.4.4")

    @staticmethod
    async def _addresses(resolver: dns.asyncresolver.Resolver, name: str) -> tuple[list[str], str]:
        """A then AAAA addresses of ``name``, and what went wrong when a lookup failed for a
        reason that may heal (an empty string when the name simply has no address)."""
        try:   # RFC 5321 §5.1: an MX name that is an address literal is a configuration error
            ipaddress.ip_address(name)
            return [], ""
        except ValueError:
            pass
        addresses: list[str] = []
        trouble = ""
        for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            try:
                answer = await resolver.resolve(name, rdtype)
            except dns.resolver.NXDOMAIN:
                break
            except dns.resolver.NoAnswer:
                continue
            except (dns.exception.DNSException, OSError) as exc:
                trouble = _dns_problem(exc)
                continue
            addresses.extend(r.address for r in answer)
        return list(dict.fromkeys(addresses)), trouble if not addresses else ""


def _client_tls() -> ssl.SSLContext:
    """Opportunistic TLS (RFC 7435): encrypt when offered, accept any certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send(hop: Hop, *, helo: str, sender: str, recipients: list[str], data: bytes,
         timeout: float = CONNECT_TIMEOUT) -> dict[str, Outcome]:
    """One SMTP transaction with ``hop``: an Outcome per recipient. Never raises."""
    where = f"{hop.host}:{hop.port}" if hop.port != 25 else hop.host
    if hop.name and hop.name != hop.host:
        where = f"{hop.name}[{where}]"
    try:
        client = smtplib.SMTP(hop.host, hop.port, local_hostname=helo, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__   # SMTPException is an OSError
        return {r: Outcome(0, f"cannot connect to {where}: {reason}", where) for r in recipients}
    try:
        return _transaction(client, hop, where, sender, recipients, data)
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return {r: Outcome(exc.smtp_code, f"{exc.smtp_code} {text}", where) for r in recipients}
    except (OSError, smtplib.SMTPException) as exc:
        return {r: Outcome(0, f"{where}: {exc or type(exc).__name__}", where) for r in recipients}
    finally:
        try:
            client.quit()
        except Exception:  # noqa: BLE001 - the transaction's result is already known
            client.close()


def _reply(code: int, msg: bytes) -> str:
    return f"{code} {msg.decode('utf-8', 'replace')}"


def _transaction(client: smtplib.SMTP, hop: Hop, where: str, sender: str, recipients: list[str],
                 data: bytes) -> dict[str, Outcome]:
    client.ehlo_or_helo_if_needed()
    if client.has_extn("starttls"):
        client.starttls(context=_client_tls())
        client.ehlo()
    if hop.auth is not None:
        if not client.has_extn("auth"):
            return {r: Outcome(0, f"{where} offers no AUTH; cannot log on to the smart host", where)
                    for r in recipients}
        client.login(*hop.auth)
    options = []
    needs_utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
    if needs_utf8:
        if not client.has_extn("smtputf8"):
            return {r: Outcome(553, f"553 5.6.7 {where} does not support SMTPUTF8 addresses", where)
                    for r in recipients}
        options.append("SMTPUTF8")
    if client.has_extn("8bitmime") and not data.isascii():
        options.append("BODY=8BITMIME")
    if client.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    code, msg = client.mail(sender, options)
    if code != 250:
        return {r: Outcome(code, _reply(code, msg), where) for r in recipients}
    outcomes: dict[str, Outcome] = {}
    accepted = []
    for rcpt in recipients:
        code, msg = client.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        else:
            outcomes[rcpt] = Outcome(code, _reply(code, msg), where)
    if not accepted:
        client.rset()
        return outcomes
    code, msg = client.data(data)   # smtplib dot-stuffs and ends with CRLF.CRLF
    for rcpt in accepted:
        outcomes[rcpt] = Outcome(code, _reply(code, msg), where)
    return outcomes


def local_helo(hostname: str) -> str:
    """The name this server gives in HELO and reports: the hostname setting, else the machine's."""
    return hostname or machine_name()


Sender = Callable[..., dict[str, Outcome]]


class RouteSettings(Protocol):
    """The settings the client reads (service.live_settings.LiveSettings is one)."""

    @property
    def hostname(self) -> str: ...

    def get(self, name: str) -> object: ...


class RemoteDelivery:
    """Sends queued mail to other servers, as the settings say now (routes, smart host, DNS)."""

    def __init__(self, settings: RouteSettings, sealer: Sealer | None, *, sender: Sender = send) -> None:
        self.settings = settings
        self.sealer = sealer     # opens the smart host password (None: the service has no server key)
        self.send = sender       # one SMTP transaction (tests stand in for it)

    def resolver(self) -> MxResolver:
        """A resolver following the settings of this moment. Blocking: the smart host password
        is unsealed with the server key (disk, keyring)."""
        get = self.settings.get
        auth = None
        user = str(get("smarthost_user") or "")
        if user:
            auth = (user, self._unseal(str(get("smarthost_password") or "")))
        return MxResolver(routes=str(get("smtp_routes") or ""), smarthost=str(get("smarthost") or ""),
                          smarthost_auth=auth, dns_servers=str(get("dns_servers") or ""))

    def deliver(self, route: Route, *, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        """Send ``data`` to ``recipients`` (all of one domain) along ``route``; blocking. An
        Outcome per recipient; a route without servers fails them all with its error."""
        if not route.hops:
            code = 550 if route.permanent else 451
            return {a: Outcome(code, f"{code} {route.status} {route.error}") for a in recipients}
        helo = local_helo(self.settings.hostname)
        outcomes: dict[str, Outcome] = {}
        pending = list(recipients)
        for hop in route.hops:
            outcomes.update(self.send(hop, helo=helo, sender=sender, recipients=pending, data=data))
            # Try the next MX only for recipients this one could not take for a reason of its
            # own (no connection, 4xx); a 5xx is the domain's answer (RFC 5321 §5.1).
            pending = [a for a in pending if outcomes[a].code == 0 or 400 <= outcomes[a].code < 500]
            if not pending:
                break
        return outcomes

    def _unseal(self, stored: str) -> str:
        """The smart host password, sealed with the server key in the settings."""
        if not stored:
            return ""
        if self.sealer is None:
            raise Unavailable("The smart host password cannot be read without the server key.")
        return self.sealer.unseal("smarthost_password", stored)
