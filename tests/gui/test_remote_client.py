"""The console's client over TLS against the real service's remote administration listener:
trust on first use, token refusal, then the op table and events as over the Unix socket."""
from __future__ import annotations

import pytest

from gui import ipc_client
from gui.ipc_client import IpcClient
from tests.support import ServiceProcess, free_port, wait_for


@pytest.fixture(scope="module")
def remote_service(tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("gui-remote") / "data").start()
    port = free_port()
    svc.call("settings.set", name="throttle_delay_ms", value=0)
    svc.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    svc.call("settings.set", name="admin_tcp_port", value=port)
    wait_for(lambda: svc.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    svc.tcp_port = port
    svc.token = svc.call("admin.token_create", name="console")["token"]
    svc.fingerprint = svc.call("server.info")["tls"]["fingerprint"]
    yield svc
    svc.stop()


def test_first_use_asks_about_the_certificate_then_connects_with_it_pinned(qtbot, remote_service, monkeypatch):
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = IpcClient("/nonexistent")
    with qtbot.waitSignal(client.certificate_unknown, timeout=10_000) as asked:
        client.point_at_remote("127.0.0.1", remote_service.tcp_port, remote_service.token)
    fingerprint, details = asked.args
    assert fingerprint == remote_service.fingerprint
    assert "self" in details.lower() or "signed" in details.lower() or "trusted" in details.lower()
    assert not client.is_connected
    with qtbot.waitSignal(client.connected, timeout=10_000):
        client.trust(fingerprint)
    assert client.target == f"127.0.0.1:{remote_service.tcp_port}"
    answers = []
    client.request("domain.add", {"name": "over-tls.example"}, answers.append, answers.append)
    with qtbot.waitSignal(client.event_received, timeout=10_000,
                          check_params_cb=lambda name, data: name == "domain.added") as ev:
        pass
    assert ev.args[1]["name"] == "over-tls.example"
    qtbot.waitUntil(lambda: answers != [])
    assert answers[0]["name"] == "over-tls.example"
    audit = remote_service.call("audit.list", limit=10)["items"]
    assert any(a["op"] == "domain.add" and "token console" in a["actor"] for a in audit)
    client.stop()


def test_a_wrong_token_stops_the_retries_and_says_why(qtbot, remote_service, monkeypatch):
    monkeypatch.setattr(ipc_client, "RETRY_MS", 100)
    client = IpcClient("/nonexistent")
    with qtbot.waitSignal(client.auth_failed, timeout=10_000) as refused:
        client.point_at_remote("127.0.0.1", remote_service.tcp_port, "p3t_wrong", remote_service.fingerprint)
    assert "not valid" in refused.args[0]
    qtbot.wait(400)
    assert not client.is_connected and not client._retry.isActive()


def test_a_changed_certificate_is_not_accepted_silently(qtbot, remote_service):
    client = IpcClient("/nonexistent")
    with qtbot.waitSignal(client.certificate_unknown, timeout=10_000) as asked:
        client.point_at_remote("127.0.0.1", remote_service.tcp_port, remote_service.token, "AB:" * 31 + "AB")
    assert asked.args[0] == remote_service.fingerprint
    assert not client.is_connected
