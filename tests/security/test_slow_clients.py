"""Time limits before logon (issue 12): a POP3 or submission client that has not logged on, or a
port-25 client that has not finished a message, within a bounded total time is disconnected,
however slowly it trickles bytes; the remote administration listener has a short limit too and
holds connections per address. Logged-on clients and finished messages are not cut short."""
from __future__ import annotations

import base64
import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from service.ipc.tcp import LOGIN_TIMEOUT, MAX_PER_ADDRESS
from tests.support import ServiceProcess, free_port, unverified_tls, wait_for
from tests.support import read_line as _line

LIMIT = 2           # seconds: pop3_logon_timeout and smtp_logon_timeout in these tests
TRANSACTION = 3     # seconds: smtp_transaction_timeout
TRICKLE = 0.25      # a byte this often: far inside the idle timeouts, so only the total limit can cut
PASSWORD = "Secret-pass1"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("slow") / "data").start()
    for name, value in (("pop3_logon_timeout", LIMIT), ("smtp_logon_timeout", LIMIT),
                        ("smtp_transaction_timeout", TRANSACTION), ("sparequired", False),
                        ("throttle_delay_ms", 0)):
        svc.call("settings.set", name=name, value=value)
    port = free_port()
    svc.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    svc.call("settings.set", name="admin_tcp_port", value=port)
    svc.admin_port = port
    wait_for(lambda: svc.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    svc.add_mailbox("alice@example.com", PASSWORD)
    yield svc
    svc.stop()


def _trickle(sock: socket.socket, data: bytes, within: float) -> tuple[bytes, float]:
    """Send ``data`` a byte at a time until the server hangs up; what it said, and after how long."""
    started = time.monotonic()
    received = b""
    sock.settimeout(TRICKLE)
    for byte in data * 100:
        assert time.monotonic() - started < within, "still connected: the time limit did not cut"
        try:
            sock.sendall(bytes([byte]))
        except OSError:   # reset: the server has closed
            break
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    else:
        pytest.fail("the data ran out before the server hung up")
    return received, time.monotonic() - started


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def pop3_a_trickling_client_is_cut_at_the_logon_limit(service: ServiceProcess) -> None:
    with _connect(service.ports["pop3"]) as sock:
        assert _line(sock).startswith(b"+OK")
        said, took = _trickle(sock, b"USER alice@example.com\r\n", LIMIT + 5)
    assert LIMIT - 0.5 <= took
    assert said.endswith(b"-ERR [SYS/TEMP] No logon within the time allowed; closing the connection.\r\n")


def pop3_a_logged_on_client_stays(service: ServiceProcess) -> None:
    with _connect(service.ports["pop3"]) as sock:
        assert _line(sock).startswith(b"+OK")
        sock.sendall(b"USER alice@example.com\r\n")
        assert _line(sock).startswith(b"+OK")
        sock.sendall(f"PASS {PASSWORD}\r\n".encode())
        assert _line(sock).startswith(b"+OK")
        ends = time.monotonic() + LIMIT + 0.5
        while time.monotonic() < ends:   # past the logon limit, still served
            sock.sendall(b"NOOP\r\n")
            assert _line(sock).startswith(b"+OK")
            time.sleep(TRICKLE)
        sock.sendall(b"QUIT\r\n")
        assert _line(sock).startswith(b"+OK")


def pop3s_a_silent_client_is_cut_at_the_logon_limit(service: ServiceProcess) -> None:
    with unverified_tls().wrap_socket(_connect(service.ports["pop3s"])) as tls:
        assert _line(tls).startswith(b"+OK")
        started = time.monotonic()
        tls.settimeout(LIMIT + 5)
        assert tls.recv(200).startswith(b"-ERR [SYS/TEMP] No logon")
        assert time.monotonic() - started >= LIMIT - 0.5


def submission_a_trickling_client_is_cut_at_the_logon_limit(service: ServiceProcess) -> None:
    with _connect(service.ports["submission"]) as sock:
        assert _line(sock).startswith(b"220")
        said, took = _trickle(sock, b"EHLO slow.example\r\n", LIMIT + 5)
    assert LIMIT - 0.5 <= took
    assert said.endswith(b"421 4.4.2 Time limit reached; closing the connection\r\n")


def submission_a_logged_on_client_stays(service: ServiceProcess) -> None:
    with smtplib.SMTP("127.0.0.1", service.ports["submission"], timeout=10) as client:
        client.ehlo("fast.example")
        token = base64.b64encode(f"\0alice@example.com\0{PASSWORD}".encode()).decode()
        assert client.docmd("AUTH", f"PLAIN {token}")[0] == 235
        ends = time.monotonic() + LIMIT + 0.5
        while time.monotonic() < ends:
            assert client.noop()[0] == 250
            time.sleep(TRICKLE * 2)


def port_25_a_trickling_client_is_cut_at_the_transaction_limit(service: ServiceProcess) -> None:
    with _connect(service.ports["smtp"]) as sock:
        assert _line(sock).startswith(b"220")
        sock.sendall(b"HELO slow.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
        for _ in range(4):
            _line(sock)
        said, took = _trickle(sock, b"Subject: slow\r\n\r\nbody\r\n", TRANSACTION + 5)
    assert TRANSACTION - 0.5 <= took
    assert said.endswith(b"421 4.4.2 Time limit reached; closing the connection\r\n")


def port_25_each_finished_message_gets_a_new_limit(service: ServiceProcess) -> None:
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=10) as client:
        client.helo("steady.example")
        started = time.monotonic()
        for n in range(2):     # two messages, each well inside the limit: 2 x 1.7 s > TRANSACTION
            client.sendmail("a@remote.example", ["alice@example.com"], f"Subject: {n}\r\n\r\nbody\r\n")
            pause_until = time.monotonic() + TRANSACTION * 0.57
            while time.monotonic() < pause_until:
                assert client.noop()[0] == 250    # RSET or NOOP buy no time; the message did
                time.sleep(TRICKLE)
        assert time.monotonic() - started > TRANSACTION
        # now only commands, no message: cut at the limit
        with pytest.raises(smtplib.SMTPServerDisconnected):
            deadline = time.monotonic() + TRANSACTION + 5
            while time.monotonic() < deadline:
                client.rset()
                time.sleep(TRICKLE)


def _together(service: ServiceProcess, *scenarios) -> None:
    """Run the scenarios side by side (each waits out a time limit); any failure fails the test."""
    with ThreadPoolExecutor(len(scenarios)) as pool:
        for future in [pool.submit(scenario, service) for scenario in scenarios]:
            future.result()


def test_trickling_and_silent_clients_are_cut_at_their_limits(service):
    _together(service, pop3_a_trickling_client_is_cut_at_the_logon_limit,
              pop3s_a_silent_client_is_cut_at_the_logon_limit,
              submission_a_trickling_client_is_cut_at_the_logon_limit,
              port_25_a_trickling_client_is_cut_at_the_transaction_limit)


def test_logged_on_clients_and_finished_messages_are_not_cut(service):
    _together(service, pop3_a_logged_on_client_stays, submission_a_logged_on_client_stays,
              port_25_each_finished_message_gets_a_new_limit)


def test_admin_tls_listener_cuts_a_slow_logon_and_limits_each_address(service):
    port = service.admin_port
    with unverified_tls().wrap_socket(_connect(port)) as tls:
        _said, took = _trickle(tls, b'{"id": 1, "op": "auth.login", "params": {"token": "p3t_x"}}\n',
                               LOGIN_TIMEOUT + 5)
        assert LOGIN_TIMEOUT - 0.5 <= took
    held = [unverified_tls().wrap_socket(_connect(port)) for _ in range(MAX_PER_ADDRESS)]
    try:
        extra = _connect(port)
        extra.settimeout(5)
        assert extra.recv(100) == b""   # refused at accept: closed without a handshake
        extra.close()
    finally:
        for sock in held:
            sock.close()
