"""Outgoing delivery: where a domain's mail goes (static route, smart host, DNS MX with A/AAAA
fallback) and one SMTP client transaction with opportunistic STARTTLS and optional AUTH.

Blocking code (dnspython, smtplib): the queue runs it in worker threads.
"""
from __future__ import annotations

import logging
import os
import smtplib
import socket
import ssl
from dataclasses import dataclass, field

from core.hostname import machine_name
from service.smtp.settings import parse_routes

log = logging.getLogger(__name__)

TEST_MX_ENV = "POP3SVC_TEST_MX"   # "domain=127.0.0.1:port,..." replaces DNS (tests, labs)
CONNECT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Hop:
    """One server to try for a domain."""

    host: str
    port: int = 25
    auth: tuple[str, str] | None = None   # smart host credentials


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


class MxResolver:
    """Static routes and ``POP3SVC_TEST_MX`` first, then the smart host, then DNS."""

    def __init__(self, *, routes: str = "", smarthost: str = "", smarthost_auth: tuple[str, str] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.routes = parse_routes(env.get(TEST_MX_ENV, ""))
        self.routes.update(parse_routes(routes))
        self.smarthost = smarthost
        self.smarthost_auth = smarthost_auth

    def route(self, domain: str) -> Route:
        if domain in self.routes:
            return Route([Hop(h, p) for h, p in self.routes[domain]])
        if domain.startswith("["):
            literal = domain[1:-1]
            literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
            return Route([Hop(literal, 25)])
        if self.smarthost:
            from service.smtp.settings import parse_host_port
            host, port = parse_host_port(self.smarthost, 25)
            return Route([Hop(host, port, self.smarthost_auth)])
        if "*" in self.routes:
            return Route([Hop(h, p) for h, p in self.routes["*"]])
        return self._dns(domain)

    @staticmethod
    def _dns(domain: str) -> Route:
        """RFC 5321 §5.1: MX records by preference; none → the domain's own A/AAAA (implicit MX)."""
        import dns.exception
        import dns.resolver

        resolver = dns.resolver.Resolver()
        resolver.lifetime = 15.0
        try:
            answer = resolver.resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            return Route(error=f"The domain {domain} does not exist (DNS NXDOMAIN).", permanent=True, status="5.1.2")
        except dns.resolver.NoAnswer:
            answer = None
        except (dns.exception.DNSException, OSError) as exc:
            return Route(error=f"DNS lookup of {domain} failed: {exc}", status="4.4.3")
        if answer is None:
            try:
                for rdtype in ("A", "AAAA"):
                    try:
                        resolver.resolve(domain, rdtype)
                        return Route([Hop(domain, 25)])
                    except dns.resolver.NoAnswer:
                        continue
            except dns.resolver.NXDOMAIN:
                pass
            except (dns.exception.DNSException, OSError) as exc:
                return Route(error=f"DNS lookup of {domain} failed: {exc}", status="4.4.3")
            return Route(error=f"The domain {domain} has no mail server (no MX, A or AAAA record).",
                         permanent=True, status="5.1.2")
        records = sorted(answer, key=lambda r: r.preference)
        hosts = [str(r.exchange).rstrip(".") for r in records]
        if hosts == [""]:  # RFC 7505 null MX: "this domain accepts no mail"
            return Route(error=f"The domain {domain} accepts no mail (null MX).", permanent=True, status="5.1.10")
        return Route([Hop(h, 25) for h in hosts if h])


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
    try:
        client = smtplib.SMTP(hop.host, hop.port, local_hostname=helo, timeout=timeout)
    except (OSError, smtplib.SMTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
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
    return hostname or machine_name()
