"""The name this machine answers to as a mail server (issue 13 §4).

``socket.getfqdn()`` answers ``localhost`` on a Debian machine whose ``/etc/hosts`` reads
``127.0.0.1 localhost vm``: it takes the first name of the first address that matches. The server
would then greet as ``localhost`` and tell users to set "Incoming mail server: localhost".
"""
from __future__ import annotations

import socket

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
                            "ip6-localhost", "ip6-loopback"})


def is_loopback_name(name: str) -> bool:
    """True for the names every machine has for itself (never a name to give mail users)."""
    return name.strip().rstrip(".").lower() in LOOPBACK_NAMES


def machine_name() -> str:
    """The machine's fully qualified name when it has one, else its host name; never ``localhost``
    unless the machine really is so named."""
    host = socket.gethostname().strip().rstrip(".").lower()
    if "." in host:
        return host
    # The canonical name of the host name, as the resolver (hosts file, DNS) gives it; a dotted
    # name that is not a loopback alias is its fully qualified name.
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_CANONNAME)
    except (OSError, UnicodeError):
        infos = []
    for *_rest, canonical, _addr in infos:
        name = (canonical or "").strip().rstrip(".").lower()
        if "." in name and not is_loopback_name(name):
            return name
    # A hosts-file line "192.0.2.7 vm.example.com vm" names it as an alias of the host name.
    try:
        primary, aliases, _addrs = socket.gethostbyname_ex(host)
    except (OSError, UnicodeError):
        primary, aliases = "", []
    for candidate in (primary, *aliases):
        name = candidate.strip().rstrip(".").lower()
        if name.startswith(host + ".") and not is_loopback_name(name):
            return name
    return host or "localhost"
