"""The one parser each for sizes, networks, host:port and rates (core/parsing.py)."""
from __future__ import annotations

import ipaddress

import pytest

from core.errors import Invalid
from core.ipc.protocol import split_host_port
from core.parsing import (
    host_port_text,
    in_networks,
    optional_size,
    parse_dns_servers,
    parse_host_port,
    parse_networks,
    parse_rate,
    size,
    whole_number,
    yes_no,
)

MB = 1024 * 1024


@pytest.mark.parametrize(("text", "expected"), [
    ("25 MB", 25 * MB), ("512k", 512 * 1024), ("1048576", MB), ("2 GB", 2 * 1024 * MB), ("", None), ("0", None),
    ("none", None), ("Unlimited", None), (None, None),
], ids=["MB", "k", "bytes", "GB", "empty", "zero", "none", "unlimited", "None"])
def test_sizes(text, expected):
    assert optional_size(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("lots", "not a size"), ("12 TB", "not a size"), ("-5", "negative")], ids=["word", "unit", "negative"])
def test_bad_sizes_say_what_to_write(text, message):
    with pytest.raises(Invalid, match=message):
        optional_size(text)


def test_a_required_size_cannot_be_unlimited():
    assert size("1 KB") == 1024
    with pytest.raises(Invalid, match="cannot be unlimited"):
        size("0")


def test_networks_from_any_separator():
    nets = parse_networks("127.0.0.1; 10.0.0.0/8 ::1,192.168.1.7/24")
    assert [str(n) for n in nets] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.1.0/24"]
    assert parse_networks("") == ()
    assert in_networks("10.1.2.3", nets) and in_networks("::ffff:127.0.0.1", nets)
    assert not in_networks("192.0.2.1", nets) and not in_networks("not-an-ip", nets) and not in_networks("", nets)


def test_a_bad_network_is_named():
    with pytest.raises(Invalid, match="'office' is not an address or network"):
        parse_networks("10.0.0.0/8, office")


@pytest.mark.parametrize(("text", "expected"), [
    ("mail.example.net", ("mail.example.net", 25)), ("mail.example.net:587", ("mail.example.net", 587)),
    ("[::1]:2525", ("::1", 2525)), ("[2001:db8::1]", ("2001:db8::1", 25)), ("2001:db8::53", ("2001:db8::53", 25)),
    (" 10.0.0.5:26 ", ("10.0.0.5", 26)),
], ids=["name", "name-port", "v6-port", "v6-bracket", "v6-bare", "v4-port"])
def test_host_port(text, expected):
    assert parse_host_port(text, 25) == expected
    assert parse_host_port(host_port_text(*expected), 1) == expected   # written back, read the same


@pytest.mark.parametrize(("text", "message"), [
    ("", "not a host"), ("a b:25", "not a host"), ("host:0", "not a port number"), ("host:70000", "not a port"),
    ("user@host", "not a host"), ("host:port", "not a host"),
], ids=["empty", "space", "port-0", "port-big", "at", "word-port"])
def test_bad_host_port(text, message):
    with pytest.raises(Invalid, match=message):
        parse_host_port(text, 25)


def test_the_admin_channels_host_parser_is_the_same_parser():
    assert split_host_port("mail.example.com") == ("mail.example.com", 9110)
    assert split_host_port("[::1]:9111") == ("::1", 9111)
    assert split_host_port("a/b") is None


def test_dns_servers_take_bare_ipv6():
    assert parse_dns_servers("192.0.2.53, 127.0.0.1:5353 [2001:db8::53]:53 2001:db8::54") == [
        ("192.0.2.53", 53), ("127.0.0.1", 5353), ("2001:db8::53", 53), ("2001:db8::54", 53)]
    with pytest.raises(Invalid, match="not a DNS server"):
        parse_dns_servers("dns.example.net")
    assert ipaddress.ip_address(parse_dns_servers("::1")[0][0]).is_loopback


@pytest.mark.parametrize(("text", "expected"), [
    ("200/hour", (200, 3600)), ("30/min", (30, 60)), ("5 / 10 minutes", (5, 600)), ("1/day", (1, 86400)),
    ("0", (0, 0)), ("unlimited", (0, 0)),
], ids=["hour", "min", "ten-minutes", "day", "zero", "unlimited"])
def test_rates(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["lots", "200/fortnight", "/hour"], ids=["word", "unit", "no-count"])
def test_bad_rates(text):
    with pytest.raises(Invalid, match="not a rate"):
        parse_rate(text)


def test_numbers_and_yes_no():
    check = whole_number(1, 10, "seconds")
    assert check(" 7 ") == 7
    with pytest.raises(Invalid, match="out of range; give 1 to 10 seconds"):
        check(11)
    with pytest.raises(Invalid, match="not a whole number of seconds"):
        check("x")
    assert yes_no("on") is True and yes_no("0") is False and yes_no(True) is True
    with pytest.raises(Invalid, match="yes/no"):
        yes_no("maybe")
