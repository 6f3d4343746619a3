"""The SMTP server properties: relay rules, smart host, quotas, sending limits, queue lifetimes.

Registered in the one settings registry (core.settings) when the SMTP service is imported, so
``winpop get/set`` and the console's Server Properties see them like every other property.
"""
from __future__ import annotations

import base64
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from core.errors import Invalid
from core.names import normalize_domain
from core.settings import SettingSpec, _bool, _int_range, _text, register

# The smart host password is sealed with the server key by the running service (see
# SmtpServer); the stored value is "sealed:<base64>", never the password.
SEALED_PREFIX = "sealed:"
_sealer: Callable[[str], str] | None = None


def install_sealer(sealer: Callable[[str], str] | None) -> None:
    """Let the running service encrypt secrets given to ``settings.set``."""
    global _sealer
    _sealer = sealer


def parse_networks(value: Any) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """'192.168.1.0/24, 10.0.0.5' → networks; raises Invalid naming the bad entry."""
    out = []
    for item in re.split(r"[\s,;]+", str(value or "").strip()):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise Invalid(f"'{item}' is not a network; give addresses or CIDR ranges such as 192.168.1.0/24.") from None
    return out


def _networks(value: Any) -> str:
    return ", ".join(str(n) for n in parse_networks(value))


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'mail.example.net:587', '[::1]:25' or 'mail.example.net' → (host, port)."""
    text = text.strip()
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?", text)
    if not match:
        raise Invalid(f"'{text}' is not a host; write host or host:port, such as smtp.example.net:587.")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4) or default_port)
    if not 0 < port < 65536:
        raise Invalid(f"{port} is not a port number (1-65535).")
    return host, port


def parse_routes(value: Any) -> dict[str, list[tuple[str, int]]]:
    """Static routes 'example.org=127.0.0.1:2525 10.0.0.2:25, other.net=mx.other.net' → a map.

    They take the place of DNS for the named domains (a transport map; tests use it to point a
    domain's MX at a loopback port)."""
    routes: dict[str, list[tuple[str, int]]] = {}
    for item in re.split(r"[,;]", str(value or "")):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise Invalid(f"'{item}' is not a route; write domain=host:port.")
        domain, _, hosts = item.partition("=")
        name = domain.strip().lower()
        if name != "*":
            name = normalize_domain(name)
        targets = [parse_host_port(h, 25) for h in hosts.split()]
        if not targets:
            raise Invalid(f"The route for {domain.strip()} names no host.")
        routes[name] = targets
    return routes


def _routes(value: Any) -> str:
    parsed = parse_routes(value)
    return ", ".join(f"{d}=" + " ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in t)
                     for d, t in parsed.items())


def parse_dns_servers(value: Any) -> list[tuple[str, int]]:
    """'192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53' → [(address, port)]; empty: the system's."""
    servers = []
    for item in re.split(r"[\s,;]+", str(value or "").strip()):
        if not item:
            continue
        try:
            host, port = (item, 53) if item.count(":") > 1 and not item.startswith("[") else parse_host_port(item, 53)
            address = ipaddress.ip_address(host)
        except (Invalid, ValueError):
            raise Invalid(f"'{item}' is not a DNS server address; give an IP address, optionally with a port "
                          "(192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53).") from None
        servers.append((str(address), port))
    return servers


def _dns_servers(value: Any) -> str:
    return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in parse_dns_servers(value))


def _smarthost(value: Any) -> str:
    text = _text(value)
    if text:
        host, port = parse_host_port(text, 25)
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ""


def _secret(value: Any) -> str:
    text = "" if value is None else str(value)
    if not text or text.startswith(SEALED_PREFIX):
        return text
    if _sealer is None:
        raise Invalid("The smart host password can be set only through the running service "
                      "(it is stored encrypted with the server key).")
    return _sealer(text)


def _rate(value: Any) -> str:
    """'100/hour', '20/min', '0' (no limit)."""
    text = str(value).strip().lower()
    if text in ("", "0", "none", "unlimited"):
        return "0"
    parse_rate(text)
    return text


_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
          "d": 86400, "day": 86400}


def parse_rate(text: str) -> tuple[int, int]:
    """'100/hour' → (100 recipients, 3600 seconds); (0, 0) means no limit."""
    text = str(text).strip().lower()
    if text in ("", "0", "none", "unlimited"):
        return 0, 0
    match = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?", text)
    if not match or match.group(3) not in _UNITS:
        raise Invalid(f"'{text}' is not a rate; write recipients per time, such as 200/hour or 30/min.")
    count = int(match.group(1))
    window = int(match.group(2) or 1) * _UNITS[match.group(3)]
    return count, window


def _mailbox_address(value: Any) -> str:
    """'' or name@domain (normalised); that the mailbox exists is checked when mail arrives."""
    text = _text(value).strip()
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if not at or not local or any(c in local for c in ' <>"\\@') or not local.isascii():
        raise Invalid(f"'{text}' is not a mailbox address; write name@domain, such as admin@example.com.")
    return f"{local.lower()}@{normalize_domain(domain)}"


def unseal_b64(text: str) -> bytes:
    return base64.b64decode(text[len(SEALED_PREFIX):])


SPECS = (
    SettingSpec("relay_networks", "", _networks, "Networks allowed to relay",
                help="addresses or CIDR ranges that may send to other domains without AUTH; empty: none"),
    SettingSpec("relay_authenticated", True, _bool, "Allow authenticated users to relay"),
    SettingSpec("smarthost", "", _smarthost, "Smart host",
                help="host:port all outgoing mail goes through instead of the recipients' MX; empty: DNS"),
    SettingSpec("smarthost_user", "", _text, "Smart host user name"),
    SettingSpec("smarthost_password", "", _secret, "Smart host password",
                help="stored encrypted with the server key"),
    SettingSpec("smtp_routes", "", _routes, "Static mail routes",
                help="domain=host:port entries used instead of DNS MX for those domains"),
    SettingSpec("dns_servers", "", _dns_servers, "DNS servers for outgoing mail",
                help="addresses (ip or ip:port) of the resolvers that look up MX records; empty: the system's"),
    SettingSpec("quota_full_tempfail", True, _bool, "Full mailbox is a temporary failure",
                help="1: a full mailbox answers 452 4.2.2 (the sender retries); 0: 552 5.2.2 (bounce)"),
    SettingSpec("sender_must_match", True, _bool, "Authenticated senders use their own address",
                help="MAIL FROM of an authenticated user must be that user's address"),
    SettingSpec("from_must_match", True, _bool, "Authenticated senders' From: header is their own",
                help="the From: header of mail from an authenticated user must be that user's address "
                     "(checked only while the MAIL FROM rule above is on)"),
    SettingSpec("reject_local_senders", True, _bool, "Refuse local senders on port 25 without AUTH",
                help="1: port 25 refuses a local domain as envelope sender from outside the relay networks"),
    SettingSpec("postmaster_mailbox", "", _mailbox_address, "Postmaster mailbox",
                help="local mailbox that receives postmaster@ every local domain (RFC 5321 §4.5.1); "
                     "empty: each domain's first mailbox"),
    SettingSpec("send_rate_limit", "200/hour", _rate, "Sending limit per user",
                help="recipients per time for each authenticated user, such as 200/hour; 0: none"),
    SettingSpec("max_recipients", 100, _int_range(1, 100000), "Maximum recipients per message"),
    SettingSpec("smtp_error_budget", 20, _int_range(1, 1000), "Refused commands before hang-up"),
    SettingSpec("queue_retry_interval", 300, _int_range(1, 86400), "First retry after (s)",
                help="later retries back off, doubling up to an hour"),
    SettingSpec("queue_warn_after", 4 * 3600, _int_range(1, 30 * 86400), "Delay notice after (s)"),
    SettingSpec("queue_lifetime", 5 * 86400, _int_range(1, 60 * 86400), "Give up and bounce after (s)"),
    SettingSpec("queue_concurrency", 4, _int_range(1, 100), "Simultaneous outgoing deliveries"),
    SettingSpec("queue_lease", 900, _int_range(5, 86400), "Outgoing delivery lease (s)",
                help="how long a message being delivered stays with a service node that stopped answering "
                     "before another node takes it (several nodes); renewed while the delivery runs"),
)
NAMES = tuple(spec.name for spec in SPECS)
for _spec in SPECS:
    register(_spec)
