"""Logs cannot be flooded (issue 12): thousands of client resets, failed handshakes and refused
connections add a bounded number of lines to the service log (a few per kind, then one line with
a count per interval) and not one traceback, so a flood cannot rotate the history away."""
from __future__ import annotations

import logging
import re
import socket
import time

import pytest

from service.lograte import CLIENT, CLIENT_BURST, SUMMARY, EventLog, FloodFilter
from tests.support import ServiceProcess, wait_for
from tests.support import read_line as _line
from tests.support import reset_connection as _reset

ROUNDS = 500            # of each of the kinds below: 3,000 client-triggered events in all
MAX_NEW_LINES = 200     # a few of each kind, and the counts


@pytest.fixture
def service(tmp_path):
    svc = ServiceProcess(tmp_path / "data").start()
    svc.call("settings.set", name="max_connections_per_ip", value=1)
    yield svc
    svc.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def _sessions(svc: ServiceProcess) -> int:
    return sum(lst["sessions"] for lst in svc.call("service.status")["listeners"])


def test_thousands_of_resets_give_a_bounded_log_and_no_traceback(service):
    log = service.data_dir / "logs" / "service.log"
    before = len(log.read_text().splitlines())
    pop3, pop3s, smtp = service.ports["pop3"], service.ports["pop3s"], service.ports["smtp"]
    holder = _connect(pop3)                    # with a limit of 1 a second connection is refused
    assert _line(holder).startswith(b"+OK")
    for _ in range(ROUNDS):
        refused = _connect(pop3)               # refused: over the per-address limit
        assert _line(refused).startswith(b"-ERR")
        refused.close()
        _reset(_connect(pop3s))                # reset before the implicit-TLS handshake
        tls = _connect(pop3s)                  # a failed handshake
        tls.sendall(b"\x16\x03\x01\x00\x05not TLS at all\r\n")
        tls.close()
        sock = _connect(smtp)                  # STARTTLS, then reset
        assert _line(sock).startswith(b"220")
        sock.sendall(b"EHLO flood.example\r\n")
        while not _line(sock).startswith(b"250 "):
            pass
        sock.sendall(b"STARTTLS\r\n")
        assert _line(sock).startswith(b"220")
        _reset(sock)
        sock = _connect(smtp)                  # junk commands, then reset
        assert _line(sock).startswith(b"220")
        sock.sendall(b"\xff\xfe junk\r\nMAIL FROM:<<<\r\n")
        _reset(sock)
    holder.close()
    wait_for(lambda: _sessions(service) == 0, 20, what="every flood connection to end")
    # a last, ordinary session is logged as always
    sock = _connect(pop3)
    assert _line(sock).startswith(b"+OK")
    sock.sendall(b"QUIT\r\n")
    assert _line(sock).startswith(b"+OK")
    sock.close()
    wait_for(lambda: "Traceback" in log.read_text() or _sessions(service) == 0, 10, what="the last session")
    text = log.read_text()
    new = text.splitlines()[before:]
    assert "Traceback" not in text
    assert len(new) <= MAX_NEW_LINES, f"{len(new)} lines for {5 * ROUNDS} events"
    service.stop()   # the counts of this interval are written at the latest when the service stops
    counted = re.findall(r"(\d+) more (.+?) event\(s\) in", log.read_text())
    assert {kind for _n, kind in counted} >= {"pop3 refused busy_address", "pop3s handshake failed",
                                               "starttls failed"}
    assert sum(int(n) for n, _k in counted) >= 3 * ROUNDS - 30


def test_event_log_gives_a_few_lines_then_a_count():
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("test.security.eventlog")
    logger.handlers[:] = [type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})()]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    events = EventLog(logger, interval=0.2, burst=3)
    for i in range(1000):
        events("reset", logging.INFO, "client %d reset", i)
    assert [r.getMessage() for r in records] == ["client 0 reset", "client 1 reset", "client 2 reset"]
    time.sleep(0.25)   # the interval is over (no event loop here: the summary comes with the next event)
    events("reset", logging.INFO, "client %d reset", 1000)
    summary = records[3]
    assert getattr(summary, SUMMARY) and summary.getMessage().startswith("997 more reset event(s)")
    assert records[4].getMessage() == "client 1000 reset"


def test_flood_filter_keeps_a_budget_per_template_and_few_tracebacks():
    flood = FloodFilter(interval=60, burst=10, warning_burst=4, tracebacks=2)

    def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
        info = None
        if exc:
            try:
                raise ValueError("x")
            except ValueError:
                import sys
                info = sys.exc_info()
        return logging.LogRecord("test.flood", level, __file__, 1, msg, ("a",), info)

    kept = [flood.filter(record(logging.INFO, "session %s")) for _ in range(50)]
    assert kept.count(True) == 10
    errors = [record(logging.ERROR, "failed %s", exc=True) for _ in range(50)]
    passed = [r for r in errors if flood.filter(r)]
    assert len(passed) == 4 and [bool(r.exc_info) for r in passed] == [True, True, False, False]
    again = record(logging.INFO, "session %s")
    assert flood.filter(again) is False and flood.filter(again) is False   # one verdict per record
    assert flood.filter(record(logging.INFO, "another template %s")) is True


def test_flood_filter_keeps_one_clients_lines_from_using_up_everyones():
    flood = FloodFilter(interval=60, burst=100)

    def session_line(client: str) -> logging.LogRecord:
        entry = logging.LogRecord("test.flood", logging.INFO, __file__, 1, "pop3 %s: connected", (client,), None)
        setattr(entry, CLIENT, client)
        return entry

    flooder = [flood.filter(session_line("192.0.2.66")) for _ in range(1000)]
    assert flooder.count(True) == CLIENT_BURST
    others = [flood.filter(session_line(f"198.51.100.{n}")) for n in range(100 - CLIENT_BURST)]
    assert all(others)                                   # the template's budget was still there for them
    assert flood.filter(session_line("198.51.100.200")) is False   # now it is used up
