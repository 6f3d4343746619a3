"""The outgoing queue between two real SMTP services in this process (A: example.com, B:
elsewhere.org), with a static route standing in for B's MX."""
from __future__ import annotations

import email
import email.policy
import os
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.settings import Settings
from core.tables import QueuedMessage, QueuedRecipient
from tests.service.test_smtp_harness import PASSWORD, SmtpHarness, free_port, message, wait_for


@pytest.fixture
def pair(tmp_path: Path):
    b_port = free_port()
    a = SmtpHarness(tmp_path / "a", settings={"smtp_routes": f"elsewhere.org=127.0.0.1:{b_port}"})
    a.add_domain("example.com")
    a.add_mailbox("alice@example.com")
    made = []

    def start_b() -> SmtpHarness:
        b = SmtpHarness(tmp_path / "b", ports={"smtp": b_port})
        b.add_domain("elsewhere.org")
        b.add_mailbox("bob@elsewhere.org")
        made.append(b)
        return b

    yield a, start_b
    for harness in made + [a]:
        harness.close()


def submit(a: SmtpHarness, to: list[str], subject: str = "hello") -> None:
    with a.client("smtps") as client:
        client.login("alice@example.com", PASSWORD)
        client.sendmail("alice@example.com", to, message(subject=subject, sender="alice@example.com", to=to[0]))


def reports(a: SmtpHarness) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in a.messages("alice@example.com")]


def test_delivered_to_the_other_server(pair) -> None:
    a, start_b = pair
    b = start_b()
    submit(a, ["bob@elsewhere.org"])
    got = wait_for(lambda: b.messages("bob@elsewhere.org"), what="delivery on B")
    assert b"Subject: hello" in got[0]
    assert got[0].count(b"Received:") == 2     # A's and B's
    wait_for(lambda: a.queue() == [], what="empty queue")
    assert a.counters()["smtp_relayed"] == 1 and a.counters()["smtp_queued"] == 1
    assert b.counters()["smtp_delivered"] == 1
    assert not os.listdir(a.server.queue.dir / "msg")


def test_retried_while_down_then_delivered(pair) -> None:
    a, start_b = pair
    submit(a, ["bob@elsewhere.org"])
    wait_for(lambda: a.queue() and a.queue()[0]["attempts"] >= 2, what="two failed attempts")
    entry = a.queue()[0]["recipient_states"][0]
    assert entry["status"] == "pending" and "cannot connect" in entry["last_error"]
    b = start_b()
    assert a.call(a.server.queue_retry(None)) == 1
    wait_for(lambda: b.messages("bob@elsewhere.org"), what="delivery after B came back")
    wait_for(lambda: a.queue() == [], what="empty queue")
    assert len(b.messages("bob@elsewhere.org")) == 1


def test_permanent_refusal_bounces_to_sender(pair) -> None:
    a, start_b = pair
    start_b()
    submit(a, ["nobody@elsewhere.org"], subject="lost letter")
    got = wait_for(lambda: reports(a), what="non-delivery report")
    report = got[0]
    assert report["Subject"] == "Undelivered Mail Returned to Sender"
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    parts = list(report.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = parts[1].get_payload()
    blocks = [str(b) for b in status]
    assert any("Final-Recipient: rfc822; nobody@elsewhere.org" in b and "Status: 5.1.1" in b
               and "Action: failed" in b for b in blocks)
    assert "lost letter" in parts[2].get_content()
    assert a.queue() == []
    assert a.counters()["smtp_bounced"] == 1


def test_delay_notice_then_give_up(pair) -> None:
    a, _ = pair
    a.set("queue_warn_after", 1)
    a.set("queue_lifetime", 3)
    submit(a, ["bob@elsewhere.org"], subject="never")
    got = wait_for(lambda: len(reports(a)) >= 2, timeout=20, what="delay notice and bounce") and reports(a)
    subjects = [m["Subject"] for m in got]
    assert subjects == ["Delayed Mail (still being retried)", "Undelivered Mail Returned to Sender"]
    final = str(list(got[1].iter_parts())[1].get_payload()[1])
    assert "Status: 5.4.7" in final and "gave up" in final
    assert a.queue() == []


def test_no_report_for_a_report(pair) -> None:
    a, start_b = pair
    start_b()
    a.set("relay_networks", "127.0.0.0/8")
    with a.client() as client:   # null sender through an allow-listed network
        client.sendmail("", ["nobody@elsewhere.org"], message())
    wait_for(lambda: a.queue() == [], what="the bounce to be dropped")
    assert a.counters()["smtp_bounced"] == 1
    assert reports(a) == []


def test_admin_list_show_retry_delete(pair) -> None:
    a, _ = pair
    submit(a, ["bob@elsewhere.org"], subject="held")
    queued = wait_for(lambda: a.queue() and a.queue()[0]["attempts"] >= 1 and a.queue(), what="one attempt")
    qid = queued[0]["id"]
    shown = a.call(a.server.queue_show(qid))
    assert a.call(a.server.queue_show(queued[0]["queue_id"]))["id"] == qid
    assert "Subject: held" in shown["headers"] and shown["body_preview"].startswith("Hi there.")
    assert shown["recipients"] == ["bob@elsewhere.org"] and shown["attempts"] >= 1
    assert a.call(a.server.queue_retry(qid)) == 1
    spool = a.server.queue.dir / "msg" / shown["queue_id"]
    assert spool.exists()
    assert a.call(a.server.queue_delete(qid)) == 1
    assert a.queue() == [] and not spool.exists()
    from core.errors import NotFound
    with pytest.raises(NotFound):
        a.call(a.server.queue_show(qid))


def test_queue_survives_restart_and_delivers_once(tmp_path: Path) -> None:
    b_port = free_port()
    routes = {"smtp_routes": f"elsewhere.org=127.0.0.1:{b_port}", "queue_retry_interval": 3600}
    a = SmtpHarness(tmp_path / "a", settings=routes)
    a.add_domain("example.com")
    a.add_mailbox("alice@example.com")
    for i in range(5):
        submit(a, ["bob@elsewhere.org"], subject=f"m{i}")
    wait_for(lambda: all(r["attempts"] >= 1 for r in a.queue()) and len(a.queue()) == 5,
             what="five messages tried once")
    # Leftovers a crash could leave: a half-written spool file and an unacknowledged one.
    (a.server.queue.dir / "tmp" / "HALF").write_bytes(b"partial")
    (a.server.queue.dir / "msg" / "UNACKED").write_bytes(b"never committed")
    # Old enough: with a shared spool (PostgreSQL) young files may be another node's enqueue.
    for leftover in (a.server.queue.dir / "tmp" / "HALF", a.server.queue.dir / "msg" / "UNACKED"):
        os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    a.close()
    b = SmtpHarness(tmp_path / "b", ports={"smtp": b_port})
    b.add_domain("elsewhere.org")
    b.add_mailbox("bob@elsewhere.org")
    try:
        a2 = SmtpHarness(tmp_path / "a", settings={"queue_retry_interval": 1})
        try:
            a2.call(a2.server.queue_retry(None))
            wait_for(lambda: len(b.messages("bob@elsewhere.org")) == 5, what="five deliveries")
            wait_for(lambda: a2.queue() == [], what="empty queue")
            subjects = sorted(m.split(b"Subject: ")[1].split(b"\n")[0] for m in b.messages("bob@elsewhere.org"))
            assert subjects == [b"m0", b"m1", b"m2", b"m3", b"m4"]
            # discard() drops the row, then the spool file: the folder empties a moment after the queue.
            wait_for(lambda: os.listdir(a2.server.queue.dir / "msg") == [], what="an empty spool")
            assert os.listdir(a2.server.queue.dir / "tmp") == []
        finally:
            a2.close()
    finally:
        b.close()


def test_reconcile_drops_rows_without_file(pair) -> None:
    a, _ = pair
    a.set("queue_retry_interval", 3600)
    submit(a, ["bob@elsewhere.org"])
    qid = wait_for(lambda: a.queue() and a.queue()[0]["attempts"] >= 1 and a.queue(), what="one attempt")[0]["queue_id"]
    os.unlink(a.server.queue.dir / "msg" / qid)
    report = a.server.queue.reconcile()
    assert report["missing_dropped"] == 1
    with a.db.read() as session:
        assert session.scalars(select(QueuedMessage)).all() == []
        assert session.scalars(select(QueuedRecipient)).all() == []


def test_smart_host_with_auth(tmp_path: Path) -> None:
    hub = SmtpHarness(tmp_path / "hub", settings={"sender_must_match": False})
    hub.add_domain("elsewhere.org")
    hub.add_mailbox("bob@elsewhere.org")
    hub.add_mailbox("relay@elsewhere.org", password="relay pass 1")
    a = SmtpHarness(tmp_path / "a")
    try:
        a.add_domain("example.com")
        a.add_mailbox("alice@example.com")
        a.set("smarthost", f"127.0.0.1:{hub.ports['submission']}")
        a.set("smarthost_user", "relay@elsewhere.org")
        a.set("smarthost_password", "relay pass 1")
        assert a.admin.settings_get("smarthost_password") == {"smarthost_password": "(set)"}   # not the sealed text
        with a.db.read() as session:
            stored = Settings.get(session, "smarthost_password")
        assert stored.startswith("sealed:") and "relay pass" not in stored
        submit(a, ["bob@elsewhere.org"], subject="via hub")
        got = wait_for(lambda: hub.messages("bob@elsewhere.org"), what="delivery through the smart host")
        assert b"with ESMTPSA" in got[0]     # STARTTLS and AUTH on the hop
    finally:
        a.close()
        hub.close()


def test_relay_self_test(pair) -> None:
    a, _ = pair
    results = a.call(a.server.relay_test())
    assert len(results) >= 12
    assert all(r["verdict"] == "refused" for r in results), results
    a.set("relay_networks", "127.0.0.1")
    results = {r["test"]: r for r in a.call(a.server.relay_test())}
    assert results["plain outside recipient"]["verdict"] == "RELAYED"
