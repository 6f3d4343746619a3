"""The parsers of setting values: one each for numbers, yes/no, text, sizes, networks, host:port,
rates, mail routes, DNS servers and directory URLs.

Each takes what a person typed (winpop, the console, ``--setting``) or what the database holds,
and returns the value or raises ``Invalid`` with a message that says what to write instead. The
settings catalog (core/catalog.py) checks values with them; the service reads stored values
with the same functions, so what was accepted is read the same way.
"""
from __future__ import annotations

import errno
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

from core.errors import Invalid
from core.names import normalize_domain

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Check = Callable[[Any], Any]

NO_LIMIT = ("", "0", "none", "unlimited")
EVERY_ADDRESS = "0.0.0.0"


def whole_number(lo: int, hi: int, unit: str = "") -> Callable[[Any], int]:
    """A check for a whole number from ``lo`` to ``hi`` (of ``unit``, named in the refusal)."""
    of_unit = f" of {unit}" if unit else ""
    wanted = f"{lo} to {hi} {unit}".rstrip() if unit else f"a number from {lo} to {hi}"

    def check(value: Any) -> int:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise Invalid(f"'{value}' is not a whole number{of_unit}; give {wanted}.") from None
        if not lo <= number <= hi:
            raise Invalid(f"{number} is out of range; give {wanted}.")
        return number
    return check


port = whole_number(0, 65535)


def yes_no(value: Any) -> bool:
    """1/0, true/false, yes/no, on/off → a bool."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Invalid(f"'{value}' is not a yes/no value; give 1 or 0.")


def one_line(value: Any) -> str:
    """Text on one line, stripped; no NUL."""
    text = str(value)
    if "\x00" in text or "\n" in text:
        raise Invalid("The value may not contain NUL or line breaks.")
    return text.strip()


# -- sizes ---------------------------------------------------------------------------------------
_SIZE_UNITS = (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("K", 1024), ("M", 1024**2), ("G", 1024**3))


def optional_size(value: Any) -> int | None:
    """'25 MB', '512k', '1048576' → bytes; '', 0, 'none', 'unlimited' → None (no limit)."""
    if value is None or str(value).strip().lower() in NO_LIMIT:
        return None
    text = str(value).strip().upper()
    factor = 1
    for suffix, multiple in _SIZE_UNITS:
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)].strip(), multiple
            break
    try:
        number = int(text) * factor
    except ValueError:
        raise Invalid(f"'{value}' is not a size; give bytes or a number with KB, MB or GB.") from None
    if number < 0:
        raise Invalid("A size cannot be negative.")
    return number


def size(value: Any) -> int:
    """Like ``optional_size``, but a limit must be given."""
    number = optional_size(value)
    if number is None:
        raise Invalid("This size cannot be unlimited; give bytes or a number with KB, MB or GB.")
    return number


# -- lists, networks, addresses --------------------------------------------------------------------
def split_list(value: Any) -> list[str]:
    """'a, b; c d' → ['a', 'b', 'c', 'd']: the items of a list a person typed."""
    return [item for item in re.split(r"[\s,;]+", str(value or "").strip()) if item]


def parse_networks(value: Any) -> tuple[Network, ...]:
    """'127.0.0.1, 192.168.1.0/24' → the networks; Invalid naming the first bad item."""
    networks = []
    for item in split_list(value):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise Invalid(f"'{item}' is not an address or network; give e.g. 127.0.0.1 or 192.168.1.0/24.") from None
    return tuple(networks)


def networks_text(value: Any) -> str:
    """A network list in its normal form ('10.0.0.5' → '10.0.0.5/32'), comma-separated."""
    return ", ".join(str(n) for n in parse_networks(value))


def in_networks(address: str, networks: Iterable[Network]) -> bool:
    """Is ``address`` (an IP, possibly IPv4-mapped or with a zone) inside one of ``networks``?"""
    networks = tuple(networks)
    if not networks or not address:
        return False
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in net for net in networks if net.version == ip.version)


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """'mail.example.net:587', '[::1]:25', '::1' or 'mail.example.net' → (host, port)."""
    text = str(text).strip()
    match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\s]+)(?::(\d+))?", text)
    if match:
        host, port_text = match.group(1) or match.group(3), match.group(2) or match.group(4)
    elif _is_ip(text):          # a bare IPv6 address: its colons are not a port
        host, port_text = text, None
    else:
        raise Invalid(f"'{text}' is not a host; write host or host:port, such as smtp.example.net:587.")
    if any(ch.isspace() or ch in "/\\@" for ch in host):
        raise Invalid(f"'{text}' is not a host; write host or host:port, such as smtp.example.net:587.")
    number = int(port_text) if port_text else default_port
    if not 0 < number < 65536:
        raise Invalid(f"{number} is not a port number (1-65535).")
    return host, number


def host_port_text(host: str, number: int) -> str:
    """(host, port) as written back: IPv6 addresses in brackets."""
    return f"[{host}]:{number}" if ":" in host else f"{host}:{number}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_address(value: Any, *, empty: str) -> str:
    """An IP address as text; '' gives ``empty``."""
    text = str(value or "").strip()
    if not text:
        return empty
    if not _is_ip(text):
        raise Invalid(f"'{text}' is not an IP address; give e.g. 0.0.0.0 (all IPv4), :: (all) or 192.168.1.5.")
    return text


def bind_address(value: Any) -> str:
    """'' (every address) or an IP address of this machine: the one the mail listeners bind."""
    text = one_line(value)
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"'{text}' is not an IP address; give one of this computer's addresses (e.g. 127.0.0.1 "
                      "or 192.168.1.5), or nothing for every address.") from None
    if address.is_unspecified:     # 0.0.0.0 or :: : every address
        return str(address)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    # Binding port 0 (never listening) is how to ask the kernel whether the address is ours.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise Invalid(f"{address} is not an address of this computer; give one it has (see 'ip address'), "
                              "or nothing for every address.") from None
            raise Invalid(f"Cannot use {address}: {exc.strerror}.") from None
    return str(address)


# -- mail routing ----------------------------------------------------------------------------------
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


def parse_dns_servers(value: Any) -> list[tuple[str, int]]:
    """'192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53' → [(address, port)]; empty: the system's."""
    servers = []
    for item in split_list(value):
        try:
            host, number = parse_host_port(item, 53)
            address = ipaddress.ip_address(host)
        except (Invalid, ValueError):
            raise Invalid(f"'{item}' is not a DNS server address; give an IP address, optionally with a port "
                          "(192.0.2.53, 127.0.0.1:5353, [2001:db8::53]:53).") from None
        servers.append((str(address), number))
    return servers


_RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
               "d": 86400, "day": 86400}


def parse_rate(text: Any) -> tuple[int, int]:
    """'100/hour' → (100 recipients, 3600 seconds); (0, 0) means no limit."""
    text = str(text).strip().lower()
    if text in NO_LIMIT:
        return 0, 0
    match = re.fullmatch(r"(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?", text)
    if not match or match.group(3) not in _RATE_UNITS:
        raise Invalid(f"'{text}' is not a rate; write recipients per time, such as 200/hour or 30/min.")
    count = int(match.group(1))
    window = int(match.group(2) or 1) * _RATE_UNITS[match.group(3)]
    return count, window


# -- the directory ---------------------------------------------------------------------------------
def parse_ldap_urls(value: Any) -> list[str]:
    """'ldap://a:389, ldaps://b' → the URLs in failover order; raises Invalid naming a bad one."""
    urls = split_list(value)
    for url in urls:
        if not re.fullmatch(r"(?i)ldaps?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?/?", url):
            raise Invalid(f"'{url}' is not an LDAP server URL; write ldap://host[:port] (with StartTLS) "
                          "or ldaps://host[:port].")
    return urls
