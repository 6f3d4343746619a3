"""Two requests that add the same name at the same moment (a pipelining client, two consoles):
one succeeds, the other is told it already exists; no traceback, and the winner's folder stays."""
from __future__ import annotations

import json
import socket


def _pipelined(service, requests: list[dict]) -> list[dict]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(service.data_dir / "admin.sock"))
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        answers: dict = {}
        buffer = b""
        while len(answers) < len(requests):
            chunk = sock.recv(65536)
            assert chunk, "the service closed the channel"
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "id" in message:
                    answers[message["id"]] = message
    return [answers[r["id"]] for r in requests]


def test_the_same_mailbox_added_twice_at_once(service):
    service.call("domain.add", name="example.com")
    for round_ in range(5):
        name = f"race{round_}@example.com"
        answers = _pipelined(service, [
            {"id": i, "op": "mailbox.add", "params": {"address": name, "password": "Str0ng-pass!"}} for i in (1, 2)])
        ok = [a for a in answers if "result" in a]
        refused = [a for a in answers if "error" in a]
        assert len(ok) == 1 and len(refused) == 1, answers
        assert refused[0]["error"]["code"] == "conflict" and "already exists" in refused[0]["error"]["message"]
        folder = service.data_dir / "mailroot" / "example.com" / f"race{round_}"
        assert (folder / "new").is_dir(), "the winner's folder was removed by the loser"
    answers = _pipelined(service, [{"id": i, "op": "domain.add", "params": {"name": "other.test"}} for i in (1, 2)])
    assert sorted("result" in a for a in answers) == [False, True], answers
    assert (service.data_dir / "mailroot" / "other.test").is_dir()
    assert "Traceback" not in service.output()
    assert "Traceback" not in (service.data_dir / "logs" / "service.log").read_text()
