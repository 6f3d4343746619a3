"""The `bind_address` setting (issue 13 §5): the address the mail listeners bind, kept across
restarts; `--bind` overrides it for one run; a change restarts every listener ("all"); an address
that is not this machine's is refused and changes nothing."""
from __future__ import annotations

import socket

from tests.support import LISTENERS, ServiceProcess, listening_sockets, wait_for


class Unbound(ServiceProcess):
    """The service as the console starts it: no --bind (ports still given, free ones)."""

    def command(self) -> list[str]:
        cmd = super().command()
        at = cmd.index("--bind")
        return cmd[:at] + cmd[at + 2:]


def addresses(proc: ServiceProcess) -> dict[str, str]:
    """Each listener's address, once all five run (the admin channel answers before they start)."""
    def running() -> list[dict]:
        items = proc.call("service.status")["listeners"]
        return items if len(items) == len(LISTENERS) and all(i["state"] == "running" for i in items) else []
    return {item["name"]: item["address"] for item in wait_for(running, 20, what="the listeners to run")}


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_the_stored_address_is_used_the_flag_overrides_it_and_a_change_moves_every_listener(tmp_path):
    data = tmp_path / "data"
    first = ServiceProcess(data).start()           # --bind 127.0.0.1 for this run
    try:
        assert first.call("settings.get", name="bind_address") == {"bind_address": ""}
        answer = first.call("settings.set", name="bind_address", value=" 127.0.0.1 ")
        assert answer["value"] == "127.0.0.1" and answer["restart"] == "all"
    finally:
        first.stop()

    proc = Unbound(data, ports=first.ports).start()  # no flag: the stored address
    try:
        assert set(addresses(proc).values()) == {"127.0.0.1"}
        assert listening_sockets(proc.proc.pid) >= {("127.0.0.1", proc.ports[n]) for n in LISTENERS}
        assert not {addr for addr, _p in listening_sockets(proc.proc.pid)} & {"0.0.0.0", "::"}

        # Another address of this machine (all of 127/8 is loopback): stored, then "all" restarts.
        proc.call("settings.set", name="bind_address", value="127.0.0.2")
        proc.call("service.control", action="restart", listener="all")
        assert set(addresses(proc).values()) == {"127.0.0.2"}
        socket.create_connection(("127.0.0.2", proc.ports["pop3"]), timeout=5).close()
        assert refused("127.0.0.1", proc.ports["pop3"])
    finally:
        proc.stop()

    again = ServiceProcess(data, ports=first.ports).start()   # --bind wins for its run only
    try:
        assert set(addresses(again).values()) == {"127.0.0.1"}
        assert again.call("settings.get", name="bind_address") == {"bind_address": "127.0.0.2"}
    finally:
        again.stop()


def test_an_address_that_is_not_this_machines_is_refused_and_changes_nothing(service):
    for value, why in (("mail.example.com", "is not an IP address"),
                       ("203.0.113.7", "is not an address of this computer"),   # TEST-NET-3, RFC 5737
                       ("127.0.0.1\n", "line breaks")):
        result = service.winpop("set", "bind_address", value)
        assert result.returncode == 1 and why in result.stderr, result.stderr
    assert service.call("settings.get", name="bind_address") == {"bind_address": ""}
    assert set(addresses(service).values()) == {"127.0.0.1"}
    assert service.winpop("set", "bind_address", "", check=True).returncode == 0
