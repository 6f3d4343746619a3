"""Outgoing mail through real DNS: an authoritative nsd on a loopback address serves a zone this
test writes, the service (main.py service) looks MX records up there (``dns_servers``), and real
SMTP servers (aiosmtpd) listen on 127.N.0.x:25 as the domains' mail exchangers."""
from __future__ import annotations

import email
import email.policy
import errno
import os
import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from service.smtp.delivery import MxResolver, order_mx
from tests.end_to_end.test_smtp_e2e import Service, free_ports, wait_for

pytestmark = pytest.mark.slow

ZONE = """$ORIGIN mail.test.
$TTL 60
@        IN SOA ns.mail.test. hostmaster.mail.test. 1 3600 600 86400 60
@        IN NS  ns.mail.test.
ns       IN A   {net}.1
mx-a     IN A   {net}.2
mx-b     IN A   {net}.3
mx-c     IN A   {net}.4
mx-busy  IN A   {net}.5
mx-dead  IN A   {net}.9
ordered  IN MX  20 mx-b
ordered  IN MX  10 mx-a
shuffled IN MX  10 mx-a
shuffled IN MX  10 mx-c
down     IN MX  10 mx-dead
down     IN MX  20 mx-b
busy     IN MX  10 mx-busy
busy     IN MX  20 mx-c
implicit IN A   {net}.4
nullmx   IN MX  0 .
"""

NSD_CONF = """server:
  ip-address: {net}.1@{port}
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "{dir}"
  database: ""
  pidfile: "{dir}/nsd.pid"
  logfile: "{dir}/nsd.log"
  xfrdfile: "{dir}/xfrd.state"
  zonelistfile: "{dir}/zone.list"
  server-count: 1
  hide-version: yes
remote-control:
  control-enable: no
zone:
  name: "mail.test"
  zonefile: "mail.test.zone"
"""


@dataclass
class Receiver:
    """A real SMTP server for one MX address; remembers what it accepted."""

    address: str
    refuse: str = ""    # a reply to every RCPT (a busy server), or "" to accept
    got: list[tuple[list[str], bytes]] = field(default_factory=list)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001 - aiosmtpd API
        if self.refuse:
            return self.refuse
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd API
        self.got.append((list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 accepted"

    def subjects(self) -> list[str]:
        return [email.message_from_bytes(data)["Subject"] for _, data in self.got]


def free_net() -> str:
    """127.N.0 with its port 25 free on every address the test uses (parallel runs pick others)."""
    for n in random.sample(range(100, 250), 150):
        net = f"127.{n}.0"
        try:
            for host in (2, 3, 4, 5):
                with socket.socket() as probe:
                    probe.bind((f"{net}.{host}", 25))
            return net
        except OSError as exc:
            if exc.errno == errno.EACCES:
                pytest.skip("binding port 25 needs root (the MX servers listen on 127.N.0.x:25)")
    pytest.skip("no free 127.N.0.x:25 addresses")


@dataclass
class World:
    net: str
    dns: str                       # "ip:port" of the nsd
    receivers: dict[str, Receiver]
    service: Service


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if shutil.which("nsd") is None:
        pytest.skip("nsd (Debian package nsd) is not installed")
    if os.geteuid() != 0:
        pytest.skip("binding port 25 needs root (the MX servers listen on 127.N.0.x:25)")
    base = tmp_path_factory.mktemp("dns")
    net = free_net()
    port = free_ports(1)[0]
    zone_dir = base / "nsd"
    zone_dir.mkdir()
    (zone_dir / "mail.test.zone").write_text(ZONE.format(net=net))
    (zone_dir / "nsd.conf").write_text(NSD_CONF.format(net=net, port=port, dir=zone_dir))
    nsd = subprocess.Popen(["nsd", "-d", "-c", str(zone_dir / "nsd.conf")], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    controllers: list[Controller] = []
    service: Service | None = None
    try:
        probe = MxResolver(dns_servers=f"{net}.1:{port}", dns_lifetime=1.0, environ={})

        def nsd_answers() -> bool:
            assert nsd.poll() is None, (zone_dir / "nsd.log").read_text() if (zone_dir / "nsd.log").exists() else ""
            return bool(probe.route("ordered.mail.test").hops)
        wait_for(nsd_answers, timeout=20, what="nsd to answer")
        receivers = {"a": Receiver(f"{net}.2"), "b": Receiver(f"{net}.3"), "c": Receiver(f"{net}.4"),
                     "busy": Receiver(f"{net}.5", refuse="451 4.3.2 Too busy, try another server")}
        for receiver in receivers.values():
            controller = Controller(receiver, hostname=receiver.address, port=25)
            controller.start()
            controllers.append(controller)
        service = Service(base / "service", "example.com").start()
        service.add("alice")
        service.winpop("set", "dns_servers", f"{net}.1:{port}")
        # Retries are forced with "winpop queue retry": nothing is retried behind the test's back.
        service.winpop("set", "queue_retry_interval", "3600")
        yield World(net, f"{net}.1:{port}", receivers, service)
    finally:
        if service is not None:
            service.kill()
        for controller in controllers:
            controller.stop()
        nsd.terminate()
        nsd.wait(10)


def reports(world: World) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in world.service.fetch("alice")]


def report_about(world: World, address: str) -> email.message.EmailMessage:
    def find() -> email.message.EmailMessage | None:
        return next((r for r in reports(world) if address in str(list(r.iter_parts())[1])), None)
    return wait_for(find, what=f"the report about {address}")


def queued(world: World, address: str) -> dict | None:
    for item in world.service.queue():
        for state in item["recipient_states"]:
            if state["address"] == address:
                return state
    return None


def test_mx_in_preference_order(world: World) -> None:
    world.service.submit("alice", ["ann@ordered.mail.test"], "ordered")
    wait_for(lambda: "ordered" in world.receivers["a"].subjects(), what="delivery to the preferred MX")
    assert "ordered" not in world.receivers["b"].subjects()


def test_equal_preferences_are_shuffled(world: World) -> None:
    resolver = MxResolver(dns_servers=world.dns, environ={})
    firsts = {resolver.route("shuffled.mail.test").hops[0].host for _ in range(40)}
    assert firsts == {f"{world.net}.2", f"{world.net}.4"}   # both first in some of 40 (1 in 2^39 to fail)
    assert [h.name for h in resolver.route("ordered.mail.test").hops] == ["mx-a.mail.test", "mx-b.mail.test"]


def test_no_mx_falls_back_to_the_address_record(world: World) -> None:
    world.service.submit("alice", ["ivy@implicit.mail.test"], "implicit")
    wait_for(lambda: "implicit" in world.receivers["c"].subjects(), what="delivery to the implicit MX")


def test_connection_refused_tries_the_next_mx(world: World) -> None:
    world.service.submit("alice", ["dan@down.mail.test"], "down")
    wait_for(lambda: "down" in world.receivers["b"].subjects(), what="delivery to the second MX")


def test_4xx_tries_the_next_mx(world: World) -> None:
    world.service.submit("alice", ["bea@busy.mail.test"], "busy")
    wait_for(lambda: "busy" in world.receivers["c"].subjects(), what="delivery to the second MX")
    assert world.receivers["busy"].got == []


@pytest.mark.parametrize(("address", "status", "words"), [
    ("nil@nullmx.mail.test", "5.1.10", "null MX"),
    ("nil@gone.mail.test", "5.1.2", "does not exist"),
], ids=["null-mx", "nxdomain"])
def test_bounced_at_once(world: World, address: str, status: str, words: str) -> None:
    world.service.submit("alice", [address], f"to {address}")
    report = report_about(world, address)   # at the first try: the next one would be an hour away
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    text = str(list(report.iter_parts())[1])
    assert f"Status: {status}" in text and words in text
    assert queued(world, address) is None


def test_servfail_is_retried(world: World) -> None:
    # nsd is not authoritative for broken.test and refuses the query: no server gives an answer.
    world.service.submit("alice", ["sam@broken.test"], "servfail")
    first = wait_for(lambda: (s := queued(world, "sam@broken.test")) and s["attempts"] >= 1 and s,
                     what="the first try")
    assert first["status"] == "pending" and "DNS" in first["last_error"] and first["last_error"].startswith("451")
    world.service.winpop("queue", "retry")
    second = wait_for(lambda: (s := queued(world, "sam@broken.test")) and s["attempts"] >= 2 and s,
                      what="the second try")
    assert second["status"] == "pending"
    assert "no DNS server gave an answer" in second["last_error"]
    row = next(line for line in world.service.winpop("queue").stdout.splitlines() if "sam@broken.test" in line)
    assert "451 4.4.3 DNS lookup of the MX of broken.test" in row and " 2 " in row   # what winpop shows


def test_one_message_to_several_domains(world: World) -> None:
    to = ["amy@ordered.mail.test", "ian@implicit.mail.test", "nat@nullmx.mail.test", "ned@gone.mail.test",
          "sue@broken.test"]
    world.service.submit("alice", to, "several")
    wait_for(lambda: "several" in world.receivers["a"].subjects(), what="delivery to ordered.mail.test")
    wait_for(lambda: "several" in world.receivers["c"].subjects(), what="delivery to implicit.mail.test")
    for address in ("nat@nullmx.mail.test", "ned@gone.mail.test"):
        report = report_about(world, address)
        assert "several" in str(list(report.iter_parts())[2])
    state = wait_for(lambda: (s := queued(world, "sue@broken.test")) and s["attempts"] >= 1 and s,
                     what="the try for broken.test")
    assert state["status"] == "pending"
    entry = next(i for i in world.service.queue() if "sue@broken.test" in i["recipients"])
    assert entry["recipients"] == ["sue@broken.test"]   # the others are done with


def test_dns_timeout_is_temporary() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:   # a DNS server that never answers
        silent.bind(("127.0.0.1", 0))
        resolver = MxResolver(dns_servers=f"127.0.0.1:{silent.getsockname()[1]}", dns_lifetime=0.3, environ={})
        route = resolver.route("example.test")
    assert not route.hops and not route.permanent and route.status == "4.4.3"
    assert "did not answer in time" in route.error


def test_order_mx_shuffles_only_equal_preferences() -> None:
    rng = random.Random(13)
    records = [(20, "c"), (10, "a"), (10, "b"), (30, "d")]
    orders = [tuple(order_mx(records, rng)) for _ in range(400)]
    assert set(orders) == {("a", "b", "c", "d"), ("b", "a", "c", "d")}
    assert 150 < orders.count(("a", "b", "c", "d")) < 250
    assert order_mx([(0, "x"), (0, "x")]) == ["x"]
