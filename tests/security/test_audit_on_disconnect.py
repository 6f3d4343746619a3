"""Every state-changing admin request that reached the service is carried out and audited, even
when the client hangs up the moment it has sent it (issue 12 §2): the change and its audit entry
are one unit the disconnect cannot split."""
from __future__ import annotations

import json
import socket

from core.ipc.protocol import socket_path
from tests.support import wait_for

DOMAINS = [f"gone{i}.example" for i in range(12)]


def send_and_hang_up(service, requests: list[dict]) -> None:
    """Write the requests in one go and close the socket without reading a single answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(socket_path(service.data_dir)))
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        sock.shutdown(socket.SHUT_WR)


def test_changes_sent_before_a_hang_up_are_made_and_audited(service):
    requests = [{"id": i, "op": "domain.add", "params": {"name": name}} for i, name in enumerate(DOMAINS)]
    requests.append({"id": 99, "op": "domain.add", "params": {"name": "bad domain!"}})    # a refusal
    requests.append({"id": 100, "op": "domain.list", "params": {}})                      # a read: not audited
    send_and_hang_up(service, requests)

    def audited() -> list[dict]:
        entries = [e for e in service.call("audit.list", limit=100)["items"] if e["op"] == "domain.add"]
        return entries if len(entries) == len(DOMAINS) + 1 else []

    entries = wait_for(audited, 20, what="the audit entries of the requests sent before the hang-up")
    made = {d["name"] for d in service.call("domain.list")["items"]}
    assert made == set(DOMAINS)                       # every change was made ...
    ok = {e["target"] for e in entries if e["outcome"] == "ok"}
    assert ok == made                                 # ... and each one is in the audit log
    refused = [e for e in entries if e["outcome"] != "ok"]
    assert len(refused) == 1 and refused[0]["outcome"].startswith("refused") and "bad domain!" in refused[0]["target"]
    assert not [e for e in service.call("audit.list", limit=100)["items"] if e["op"] == "domain.list"]
