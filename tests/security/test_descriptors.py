"""File descriptors (issue 12): the service raises its soft open-file limit to the hard one and
says so, and caps all listeners' connections together below it, so that a flood of more than a
thousand idle connections from many loopback addresses is refused cleanly: every flooding client
gets an answer (a greeting or a refusal), ``winpop status`` still answers, and a client on
another address is refused with ``-ERR [SYS/TEMP]`` / ``421`` at once, never left hanging."""
from __future__ import annotations

import asyncio
import re
import resource
import socket

import pytest

from service.listeners import connection_budget
from tests.support import ServiceProcess, wait_for

OPEN_FILES = 400                  # the service's hard (and soft) limit in this test
FLOOD = 1100                      # idle connections, 20 from each of 55 loopback addresses
PER_ADDRESS = 20


class LimitedService(ServiceProcess):
    """The service started under ``ulimit -n OPEN_FILES`` (soft and hard)."""

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={OPEN_FILES}:{OPEN_FILES}", "--", *super().command()]


@pytest.fixture
def service(tmp_path):
    svc = LimitedService(tmp_path / "data").start()
    svc.call("settings.set", name="max_connections_per_ip", value=PER_ADDRESS)
    yield svc
    svc.stop()


@pytest.fixture
def many_files():
    """The flooding test process itself needs more than the usual 1024 descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if want < FLOOD + 200:
        pytest.skip(f"the hard open-file limit ({hard}) is too low to flood from this process")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _first_line(host: str, port: int, source: str) -> tuple[bytes, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    line = await asyncio.wait_for(reader.readline(), 15)
    return line, writer


async def _flood(port: int) -> list[tuple[bytes, asyncio.StreamWriter]]:
    sources = [f"127.0.0.{2 + i // PER_ADDRESS}" for i in range(FLOOD)]
    results: list[tuple[bytes, asyncio.StreamWriter]] = []
    for start in range(0, FLOOD, 100):    # in waves, so the listen backlog is not what refuses
        results += await asyncio.gather(*(_first_line("127.0.0.1", port, s) for s in sources[start:start + 100]))
    return results


def _sessions(svc: ServiceProcess) -> int:
    return sum(lst["sessions"] for lst in svc.call("service.status")["listeners"])


def _first_line_from(port: int, source: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(200)
            if not chunk:
                break
            data += chunk
        return data


def test_a_flood_of_idle_connections_is_refused_cleanly(service, many_files):
    budget = connection_budget(OPEN_FILES)
    log = service.data_dir / "logs" / "service.log"
    said = re.search(r"open files: at most (\d+); client connections of all listeners together: at most (\d+)",
                     log.read_text())
    assert said and (int(said[1]), int(said[2])) == (OPEN_FILES, budget)

    async def scenario() -> None:
        held = await _flood(service.ports["pop3"])
        try:
            greeted = [line for line, _w in held if line.startswith(b"+OK")]
            refused = [line for line, _w in held if line.startswith(b"-ERR [SYS/TEMP]")]
            assert len(greeted) + len(refused) == FLOOD            # nobody left without an answer
            assert 0 < len(greeted) <= budget
            assert _sessions(service) <= budget
            # the admin channel still answers, and so does winpop
            status = await asyncio.to_thread(service.winpop, "status")
            assert status.returncode == 0, status.stderr
            # a client on another address: a clear refusal at once, on POP3 and on SMTP
            pop3 = await asyncio.to_thread(_first_line_from, service.ports["pop3"], "127.0.0.250")
            assert pop3.startswith(b"-ERR [SYS/TEMP]")
            smtp = await asyncio.to_thread(_first_line_from, service.ports["smtp"], "127.0.0.250")
            assert smtp.startswith(b"421 ")
        finally:
            for _line, writer in held:
                writer.close()

    asyncio.run(scenario())
    wait_for(lambda: _sessions(service) == 0, 15, what="the flood's slots to be given back")
    assert _first_line_from(service.ports["pop3"], "127.0.0.250").startswith(b"+OK")
    text = log.read_text()
    assert "Traceback" not in text and "accept failed" not in text


LISTENER_ONLY = """
import asyncio, logging, sys
from service.listeners import Limits, Listener

async def main() -> None:
    listener = Listener("bare", "test", "127.0.0.1", 0, asyncio.Protocol,
                        refusal=lambda r: b"-ERR [SYS/TEMP] busy\\r\\n",
                        limits=lambda: Limits(100000, 100000))   # no budget: only the descriptors limit it
    await listener.start()
    print(listener.bound_port, flush=True)
    await asyncio.sleep(3600)

logging.basicConfig(level=logging.INFO, stream=sys.stderr)
asyncio.run(main())
"""


def test_out_of_descriptors_the_waiting_clients_are_refused_not_left_hanging(tmp_path, many_files):
    import subprocess
    import sys

    from tests.support import ROOT
    errors = tmp_path / "stderr.txt"
    with open(errors, "wb") as err:
        proc = subprocess.Popen(["prlimit", "--nofile=64:64", "--", sys.executable, "-c", LISTENER_ONLY], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=err)
    try:
        port = int(proc.stdout.readline())
        held = []
        for _ in range(120):     # far more than 64 descriptors: accept() fails with EMFILE
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        answers = []
        for sock in held[80:]:
            try:
                answers.append(sock.recv(100))
            except TimeoutError:
                answers.append(b"(nothing: left hanging)")
        assert answers == [b"-ERR [SYS/TEMP] busy\r\n"] * len(answers)
        for sock in held:
            sock.close()
    finally:
        proc.kill()
        proc.wait(5)
    lines = errors.read_text().splitlines()
    assert any("accept failed" in line for line in lines) and len(lines) < 20
