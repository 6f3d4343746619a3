"""Connection slots are always given back (issue 12): however a connection ends (a reset or a
failed handshake after STLS/STARTTLS or on an implicit-TLS port, a handshake cut off by the logon
time limit, a close during logon, a protocol error), its listener slot and its address's count
are free again, and stopping a listener starts its accounting afresh."""
from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from service.listeners import Limits, Listener, Refusal, client_key
from tests.service.test_pop3_support import pop3  # noqa: F401 - the in-process POP3 fixture
from tests.support import ServiceProcess, free_port, unverified_tls, wait_for
from tests.support import read_line as _line
from tests.support import reset_connection as _reset

PER_ADDRESS = 3
ROUNDS = 12          # four times the per-address limit: one leaked slot per round would lock us out


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("slots") / "data").start()
    svc.call("settings.set", name="max_connections_per_ip", value=PER_ADDRESS)
    svc.call("settings.set", name="sparequired", value=False)   # USER/PASS in the clear, for the logon test
    svc.call("settings.set", name="throttle_delay_ms", value=300)   # a failed logon waits: time to hang up
    svc.call("settings.set", name="throttle_failures", value=1000)
    port = free_port()
    svc.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    svc.call("settings.set", name="admin_tcp_port", value=port)
    svc.admin_port = port
    wait_for(lambda: svc.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    svc.add_mailbox("alice@example.com", "Secret-pass1")
    yield svc
    svc.stop()


def _sessions(svc: ServiceProcess, name: str) -> int:
    return next(lst["sessions"] for lst in svc.call("service.status")["listeners"] if lst["name"] == name)


def _all_free(svc: ServiceProcess, name: str) -> None:
    wait_for(lambda: _sessions(svc, name) == 0, 15, what=f"every {name} slot to be given back")


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _client_hello_start(port: int) -> bytes:
    """The first bytes a real TLS client sends: half a ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = unverified_tls().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    return hello[: len(hello) // 2]


def _pop3_stls(port: int) -> socket.socket:
    sock = _connect(port)
    assert _line(sock).startswith(b"+OK")
    sock.sendall(b"STLS\r\n")
    assert _line(sock).startswith(b"+OK")
    return sock


def _smtp_starttls(port: int) -> socket.socket:
    sock = _connect(port)
    assert _line(sock).startswith(b"220")
    sock.sendall(b"EHLO client.example\r\n")
    while not _line(sock).startswith(b"250 "):
        pass
    sock.sendall(b"STARTTLS\r\n")
    assert _line(sock).startswith(b"220")
    return sock


def _pop3_works(port: int) -> None:
    """A fresh client on the same address is served, not refused for its address."""
    sock = _connect(port)
    try:
        assert _line(sock).startswith(b"+OK"), "refused: a slot has leaked"
        sock.sendall(b"QUIT\r\n")
        assert _line(sock).startswith(b"+OK")
    finally:
        sock.close()


def _ends(kind: str, port: int, how: str) -> None:
    if kind == "pop3":
        sock = _pop3_stls(port)
    elif kind == "smtp":
        sock = _smtp_starttls(port)
    else:                           # implicit TLS: the handshake is the first thing
        sock = _connect(port)
    if how == "reset":
        _reset(sock)
    elif how == "garbage":          # a failed handshake
        sock.sendall(b"\x16\x03\x01\x00\x05hello, this is not TLS\r\n")
        sock.close()
    elif how == "half-hello-reset":  # reset in the middle of the handshake
        sock.sendall(_client_hello_start(port))
        _reset(sock)


HOWS = ["reset", "garbage", "half-hello-reset"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("listener,kind", [("pop3", "pop3"), ("smtp", "smtp"), ("submission", "smtp"),
                                           ("pop3s", "tls"), ("smtps", "tls")],
                         ids=["pop3-STLS", "smtp-STARTTLS", "submission-STARTTLS", "pop3s", "smtps"])
def test_a_connection_that_dies_in_tls_gives_its_slot_back(service, listener, kind, how):
    port = service.ports[listener]
    for _ in range(ROUNDS):
        _ends(kind, port, how)
    _all_free(service, listener)
    if listener == "pop3":
        _pop3_works(port)


@pytest.mark.parametrize("how", HOWS)
def test_the_admin_tls_listener_gives_slots_back(service, how):
    for _ in range(ROUNDS):
        _ends("tls", service.admin_port, how)
    # MAX_PER_ADDRESS (8) is below ROUNDS: a leak would refuse this logon attempt at accept.
    with unverified_tls().wrap_socket(_connect(service.admin_port)) as tls:
        tls.sendall(b'{"id": 1, "op": "service.status", "params": {}}\n')
        assert b"Log in first" in tls.recv(4096)


def test_a_close_during_logon_gives_the_slot_back(service):
    port = service.ports["pop3"]
    for _ in range(PER_ADDRESS + 2):     # the delay doubles with each failure: not too many
        sock = _connect(port)
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"USER alice@example.com\r\n")
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"PASS wrong\r\n")   # answered after the throttle's delay: gone before that
        _reset(sock)
    _all_free(service, "pop3")
    _pop3_works(port)


def test_a_handshake_that_never_comes_is_cut_by_the_logon_limit(service):
    service.call("settings.set", name="pop3_logon_timeout", value=2)
    try:
        port = service.ports["pop3"]
        silent = [_pop3_stls(port) for _ in range(PER_ADDRESS)]   # STLS, then nothing at all
        wait_for(lambda: _sessions(service, "pop3") == 0, 10, what="the silent STLS clients to be cut off")
        for sock in silent:
            sock.settimeout(5)
            assert sock.recv(100) == b""    # closed by the server, not left hanging
            sock.close()
        _pop3_works(port)
    finally:
        service.call("settings.set", name="pop3_logon_timeout", value=60)


def test_stopping_a_listener_frees_its_accounting(service):
    port = service.ports["pop3"]
    idle = [_connect(port) for _ in range(PER_ADDRESS)]
    for sock in idle:
        assert _line(sock).startswith(b"+OK")
    refused = _connect(port)
    assert _line(refused).startswith(b"-ERR [SYS/TEMP]")
    refused.close()
    service.call("service.control", action="stop", listener="pop3")
    service.call("service.control", action="start", listener="pop3")
    assert _sessions(service, "pop3") == 0
    _pop3_works(port)
    for sock in idle:
        sock.close()


# -- the listener in this process: errors inside the protocol -------------------------------------
class _Exploding(asyncio.Protocol):
    """A protocol whose command handling raises (an error a client can trigger)."""

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("boom")


def test_an_error_inside_a_command_gives_the_slot_back():
    async def scenario() -> None:
        listener = Listener("test", "test", "127.0.0.1", 0, _Exploding, refusal=lambda r: b"busy\r\n",
                            limits=lambda: Limits(100, 2))
        await listener.start()
        port = listener.bound_port
        loop = asyncio.get_running_loop()
        for _ in range(6):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"anything\r\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b""   # the server closed it
            writer.close()
        deadline = loop.time() + 5
        while listener.sessions and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert listener.sessions == 0 and listener.connections_from("127.0.0.1") == 0
        await listener.stop()

    asyncio.run(scenario())


def test_client_key_counts_ipv6_by_its_64():
    assert client_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_addresses_of_one_64_share_one_count():
    async def scenario() -> None:
        listener = Listener("test6", "test", "::1", 0, asyncio.Protocol, refusal=lambda r: r.value.encode(),
                            limits=lambda: Limits(100, 2))
        try:
            await listener.start()
        except OSError:
            pytest.skip("::1 cannot be bound here")
        port = listener.bound_port
        held = [await asyncio.open_connection("::1", port) for _ in range(2)]
        reader, writer = await asyncio.open_connection("::1", port)
        assert await asyncio.wait_for(reader.read(), 5) == Refusal.BUSY_ADDRESS.value.encode()
        writer.close()
        assert listener.connections_from("::1") == 2 == listener.connections_from("::2")   # one /64
        for _r, w in held:
            w.close()
        await listener.stop()

    asyncio.run(scenario())


def test_an_ipv6_64_is_throttled_and_banned_as_one(pop3):  # noqa: F811
    pop3.set("throttle_failures", 3)
    throttle = pop3.throttle

    async def fail_from_three_addresses() -> None:
        for n in range(1, 4):
            await throttle.failure(f"2001:db8:5:6::{n}", None)

    pop3.call(fail_from_three_addresses())
    assert throttle.is_banned("2001:db8:5:6:ffff::1")          # the whole /64
    assert not throttle.is_banned("2001:db8:5:7::1")           # the next /64 is someone else
    assert [b["value"] for b in throttle.list_bans()] == ["2001:db8:5:6::/64"]
    assert throttle.lift("2001:db8:5:6::9") == 1               # an address of the /64 lifts it
    assert not throttle.is_banned("2001:db8:5:6::1")


def test_an_implicit_tls_handshake_that_never_comes_times_out_and_gives_the_slot_back(tmp_path):
    from service.tls import TlsMaterial
    tls = TlsMaterial(tmp_path, "localhost")

    async def scenario() -> None:
        listener = Listener("tls", "test", "127.0.0.1", 0, asyncio.Protocol, refusal=lambda r: b"",
                            ssl_context=tls.context, limits=lambda: Limits(100, 2), handshake_timeout=0.5)
        await listener.start()
        loop = asyncio.get_running_loop()
        silent = [await asyncio.open_connection("127.0.0.1", listener.bound_port) for _ in range(2)]
        for reader, _writer in silent:   # nothing sent: the server gives up on the handshake
            assert await asyncio.wait_for(reader.read(), 5) == b""
        deadline = loop.time() + 5
        while listener.sessions and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert listener.sessions == 0 and listener.connections_from("127.0.0.1") == 0
        for _reader, writer in silent:
            writer.close()
        await listener.stop()

    asyncio.run(scenario())


class _FloodThenClose(asyncio.Protocol):
    """Sends more than any socket buffer holds, then closes: the transport waits to flush."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(b"x" * (32 * 1024 * 1024))   # type: ignore[attr-defined]
        transport.close()


def test_a_connection_stuck_closing_behind_a_client_that_does_not_read_is_aborted(monkeypatch):
    import service.listeners as listeners
    monkeypatch.setattr(listeners, "SWEEP_INTERVAL", 0.2)

    async def scenario() -> None:
        listener = Listener("stuck", "test", "127.0.0.1", 0, _FloodThenClose, refusal=lambda r: b"",
                            limits=lambda: Limits(100, 2))
        await listener.start()
        loop = asyncio.get_running_loop()
        sock = socket.create_connection(("127.0.0.1", listener.bound_port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)   # and never read
        deadline = loop.time() + 1
        while not listener.sessions and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert listener.sessions == 1          # closing, but its data cannot go out
        deadline = loop.time() + 5
        while listener.sessions and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert listener.sessions == 0          # aborted at the second sweep that saw it closing
        sock.close()
        await listener.stop()

    asyncio.run(scenario())
