"""The server's own name (issue 13 §4): the machine's name, never ``localhost`` by accident."""
from __future__ import annotations

import socket

import pytest

from core import hostname
from core.hostname import is_loopback_name, machine_name


def test_this_machine_is_named_by_its_own_name():
    host = socket.gethostname().rstrip(".").lower()
    name = machine_name()
    assert name == host or name.startswith(host + ".")
    if not is_loopback_name(host):
        assert not is_loopback_name(name)


def _resolver(monkeypatch, host, canonical, primary, aliases):
    monkeypatch.setattr(hostname.socket, "gethostname", lambda: host)
    monkeypatch.setattr(hostname.socket, "getaddrinfo",
                        lambda *a, **k: [(socket.AF_INET, socket.SOCK_STREAM, 6, canonical, ("127.0.1.1", 0))])
    monkeypatch.setattr(hostname.socket, "gethostbyname_ex", lambda _h: (primary, aliases, ["127.0.1.1"]))


@pytest.mark.parametrize(("host", "canonical", "primary", "aliases", "expected"), [
    # /etc/hosts: "127.0.0.1 localhost vm" (where getfqdn() answers localhost)
    ("vm", "localhost", "localhost", ["vm"], "vm"),
    # /etc/hosts: "127.0.1.1 vm.example.com vm" (Debian's installer writes this)
    ("vm", "vm.example.com", "vm.example.com", ["vm"], "vm.example.com"),
    # the canonical name is a loopback name, a later alias is the FQDN
    ("vm", "localhost.localdomain", "localhost", ["vm.example.org", "vm"], "vm.example.org"),
    # a host name that is already qualified
    ("Mail.Example.COM.", "", "", [], "mail.example.com"),
], ids=["debian-hosts-localhost-first", "debian-installer-hosts", "fqdn-alias", "qualified-hostname"])
def test_machine_name_from_the_resolver(monkeypatch, host, canonical, primary, aliases, expected):
    _resolver(monkeypatch, host, canonical, primary, aliases)
    assert machine_name() == expected


def test_unresolvable_host_name_is_still_the_name(monkeypatch):
    def fail(*_a, **_k):
        raise socket.gaierror("no such name")
    monkeypatch.setattr(hostname.socket, "gethostname", lambda: "box")
    monkeypatch.setattr(hostname.socket, "getaddrinfo", fail)
    monkeypatch.setattr(hostname.socket, "gethostbyname_ex", fail)
    assert machine_name() == "box"
