"""SIGKILL the service in the middle of deliveries: every acknowledged message survives exactly
once and no partial message is ever visible (DESIGN §5)."""
from __future__ import annotations

import hashlib
import poplib
import smtplib
import ssl
import threading

import pytest

from tests.support import ServiceProcess, wait_for

PASSWORD = "crash-test-pw-1"


def message(seq: int) -> bytes:
    body = (f"line {seq} " * 8 + "\r\n") * 500           # ~45 KB: long enough to be caught mid-write
    digest = hashlib.sha256(body.encode()).hexdigest()
    return (f"Subject: crash {seq}\r\nX-Seq: {seq}\r\nX-Digest: {digest}\r\n\r\n{body}").encode()


class Sender(threading.Thread):
    """Sends numbered messages until the connection breaks; records the acknowledged ones."""

    def __init__(self, port: int, start_seq: int) -> None:
        super().__init__(daemon=True)
        self.port, self.seq = port, start_seq
        self.acked: list[int] = []
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=20) as client:
                while True:
                    client.sendmail("sender@remote.example", ["alice@example.com"], message(self.seq))
                    self.acked.append(self.seq)
                    self.seq += 1
        except (smtplib.SMTPException, OSError) as exc:
            self.error = exc


def fetch_all(service) -> list[bytes]:
    client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
    client.stls(ssl._create_unverified_context())
    client.user("alice@example.com")
    client.pass_(PASSWORD)
    count, _ = client.stat()
    messages = [b"\r\n".join(client.retr(i)[1]) for i in range(1, count + 1)]
    client.quit()
    return messages


def check_intact(raw: bytes) -> int:
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n") if b": " in line)
    assert hashlib.sha256(body + b"\r\n").hexdigest().encode() == headers[b"X-Digest"], "partial message"
    return int(headers[b"X-Seq"])


@pytest.mark.slow
def test_sigkill_during_deliveries_loses_no_acknowledged_message(tmp_path):
    service = ServiceProcess(tmp_path / "data").start()
    service.add_mailbox("alice@example.com", PASSWORD)
    acked: list[int] = []
    seq = 0
    try:
        for _round in range(3):
            sender = Sender(service.ports["smtp"], seq)
            sender.start()
            wait_for(lambda sender=sender: len(sender.acked) >= 15 or not sender.is_alive(), timeout=60,
                     what="15 acknowledged deliveries")
            assert len(sender.acked) >= 15, f"deliveries failed: {sender.error!r}"
            service.kill()                       # in the middle of the next delivery
            sender.join(30)
            assert sender.error is not None      # the connection died with the service
            acked += sender.acked
            seq = sender.seq + 1
            service = ServiceProcess(service.data_dir, ports=service.ports).start()
        seen = [check_intact(raw) for raw in fetch_all(service)]
        assert len(seen) == len(set(seen)), "a message was stored twice"
        assert set(acked) <= set(seen), f"lost: {sorted(set(acked) - set(seen))}"
        # Anything beyond the acknowledged ones was complete on disk when the kill came: at most
        # one per round (the message in flight), never a partial one.
        assert len(set(seen) - set(acked)) <= 3
        stat = service.call("mailbox.get", address="alice@example.com")
        assert stat["message_count"] == len(seen)
    finally:
        service.stop()
