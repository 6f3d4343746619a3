"""The real QLocalSocket client against a small in-process admin server (QLocalServer, JSON lines)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from core.errors import Conflict, Invalid, MailError, Unavailable
from gui import ipc_client
from gui.ipc_client import IpcClient

FAILING_OP = "domain.lock"    # the tiny server refuses it
HANGING_OP = "relay.test"     # the tiny server never answers it (a slow op)


class TinyAdminServer:
    """Echoes every op, refuses FAILING_OP, never answers HANGING_OP; records requests, pushes
    events, can vanish and come back."""

    def __init__(self, data_dir: Path) -> None:
        self.path = str(data_dir / "admin.sock")
        self.server = QLocalServer()
        self.server.newConnection.connect(self._accept)
        self.peers: list[QLocalSocket] = []
        self.requests: list[dict] = []
        self.split_replies = False

    def listen(self) -> None:
        QLocalServer.removeServer(self.path)
        assert self.server.listen(self.path), self.server.errorString()

    def vanish(self) -> None:
        for peer in self.peers:
            peer.abort()
        self.peers.clear()
        self.server.close()

    def push(self, name: str, data: dict) -> None:
        for peer in self.peers:
            peer.write(json.dumps({"event": name, "data": data}).encode() + b"\n")

    def _accept(self) -> None:
        while self.server.hasPendingConnections():
            peer = self.server.nextPendingConnection()
            self.peers.append(peer)
            peer.readyRead.connect(lambda peer=peer: self._read(peer))

    def _read(self, peer: QLocalSocket) -> None:
        while peer.canReadLine():
            msg = json.loads(bytes(peer.readLine().data()))
            self.requests.append(msg)
            if msg["op"] == FAILING_OP:
                reply = {"id": msg["id"], "error": {"code": "conflict", "message": "The domain is locked."}}
            elif msg["op"] == HANGING_OP:
                continue
            else:
                reply = {"id": msg["id"], "result": {"op": msg["op"], "params": msg["params"]}}
            data = json.dumps(reply).encode() + b"\n"
            if self.split_replies:
                peer.write(data[:7])
                peer.flush()
                peer.write(data[7:])
            else:
                peer.write(data)


@pytest.fixture
def server(tmp_path):
    s = TinyAdminServer(tmp_path)
    s.listen()
    yield s
    s.vanish()


@pytest.fixture
def client(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(ipc_client, "RETRY_MS", 50)
    c = IpcClient(tmp_path)
    yield c
    c.stop()


def call(qtbot, client, op, params=None):
    results: list = []
    client.request(op, params or {}, results.append, results.append)
    qtbot.waitUntil(lambda: bool(results), timeout=3000)
    return results[0]


def test_connects_subscribes_and_answers(qtbot, server, client):
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    assert call(qtbot, client, "domain.list", {"limit": 5}) == {"op": "domain.list", "params": {"limit": 5}}
    assert [r["op"] for r in server.requests] == ["events.subscribe", "domain.list"]


def test_replies_split_across_reads_are_reassembled(qtbot, server, client):
    server.split_replies = True
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    assert call(qtbot, client, "stat")["op"] == "stat"


def test_errors_arrive_as_mail_errors_with_their_code(qtbot, server, client):
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    err = call(qtbot, client, FAILING_OP, {"name": "example.com"})
    assert isinstance(err, Conflict) and err.message == "The domain is locked."


def test_only_ops_of_the_table_with_its_parameters_are_sent(qtbot, server, client):
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    qtbot.waitUntil(lambda: bool(server.requests))    # events.subscribe
    unknown = call(qtbot, client, "domain.explode")
    assert isinstance(unknown, Invalid) and "Unknown operation 'domain.explode'" in unknown.message
    assert isinstance(call(qtbot, client, "domain.add", {}), Invalid)                        # missing
    assert isinstance(call(qtbot, client, "domain.add", {"name": "a.com", "evil": 1}), Invalid)   # unknown
    assert isinstance(call(qtbot, client, "domain.add", {"name": 5}), Invalid)               # wrong type
    # Sent as given (no defaults filled in): the wire is what the caller wrote.
    assert call(qtbot, client, "domain.add", {"name": "a.com"}) == {"op": "domain.add", "params": {"name": "a.com"}}
    assert [r["op"] for r in server.requests] == ["events.subscribe", "domain.add"]


def test_events_are_emitted(qtbot, server, client):
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    qtbot.waitUntil(lambda: bool(server.peers))
    with qtbot.waitSignal(client.event_received, timeout=3000) as blocker:
        server.push("domain.added", {"name": "example.com"})
    assert blocker.args == ["domain.added", {"name": "example.com"}]


def test_without_a_service_requests_fail_plainly(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(ipc_client, "RETRY_MS", 50)
    lonely = IpcClient(tmp_path / "nowhere")
    with qtbot.waitSignal(lonely.disconnected, timeout=3000):
        lonely.start()
    err = call(qtbot, lonely, "stat")
    assert isinstance(err, Unavailable) and "not reachable" in err.message
    lonely.stop()


def test_losing_the_service_fails_pending_requests_and_reconnects(qtbot, server, client):
    with qtbot.waitSignal(client.connected, timeout=3000):
        client.start()
    pending: list = []
    client.request(HANGING_OP, {}, pending.append, pending.append)
    qtbot.waitUntil(lambda: any(r["op"] == HANGING_OP for r in server.requests))
    with qtbot.waitSignal(client.disconnected, timeout=3000):
        server.vanish()
    qtbot.waitUntil(lambda: bool(pending))
    assert isinstance(pending[0], MailError) and pending[0].code == "unavailable"
    assert not client.is_connected
    with qtbot.waitSignal(client.connected, timeout=5000):
        server.listen()
    assert call(qtbot, client, "stat")["op"] == "stat"
