"""The Service Status page's words: a human label for every counter the service keeps, STARTTLS/TLS
from the catalog in the listeners table, and every listener on screen without scrolling."""
from __future__ import annotations

import poplib
import re
import smtplib
import ssl
from pathlib import Path

import pytest

from core.catalog import LISTENERS
from gui.counters import COUNTERS, counter_label, counter_text
from gui.views.status_view import StatusView, tls_word

ROOT = Path(__file__).resolve().parents[2]
BUMPED = re.compile(r"""counters\.incr\(\s*["']([^"']+)["']""")


def counters_bumped_in_the_service() -> set[str]:
    """Every counter name the service's code bumps (all are literal names)."""
    names: set[str] = set()
    for path in (ROOT / "service").rglob("*.py"):
        names |= set(BUMPED.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_counter_the_service_bumps_has_a_label_and_no_label_is_stale():
    bumped = counters_bumped_in_the_service()
    assert len(bumped) > 20        # the scan finds them (a renamed Counters method would empty it)
    assert sorted(bumped - set(COUNTERS)) == [], "counters without a label in gui/counters.py"
    assert sorted(set(COUNTERS) - bumped) == [], "labels for counters the service no longer keeps"


def test_labels_are_words_and_distinct():
    labels = [c.label for c in COUNTERS.values()]
    assert len(set(labels)) == len(labels)
    for label in labels:
        assert "_" not in label and "." not in label and label[0].isupper(), label


def test_an_unknown_counter_still_reads_as_words():
    assert counter_label("imap.logons_refused") == "Imap: logons refused"
    assert counter_text("pop3.bytes_retrieved", 3 * 2**20 + 2**19) == "3.5 MB"
    assert counter_text("pop3.logons", 12345) == "12,345"


@pytest.mark.parametrize(("name", "word"), [
    ("pop3", "STARTTLS"), ("pop3s", "TLS"), ("smtp", "STARTTLS"), ("submission", "STARTTLS"), ("smtps", "TLS"),
    ("admin_tcp", "TLS"),
], ids=lambda v: v)
def test_the_tls_column_says_starttls_tls_or_nothing(name, word):
    # The report's "tls" is True only for TLS from the first byte: the catalog decides the word.
    assert tls_word({"name": name, "tls": name in ("pop3s", "smtps", "admin_tcp")}) == word


def test_a_listener_the_catalog_does_not_know_follows_the_report():
    assert tls_word({"name": "imaps", "tls": True}) == "TLS"
    assert tls_word({"name": "lmtp", "tls": False}) == ""


def _every_listener(fake_service):
    status = fake_service.status

    def with_remote_admin():
        report = status()
        report["listeners"].append({"name": "admin_tcp", "kind": "admin", "state": "running", "address": "0.0.0.0",
                                    "port": 9110, "tls": True, "sessions": 1, "error": None})
        return report
    return with_remote_admin


@pytest.mark.parametrize("every_counter", [False, True], ids=["demo-counters", "every-counter"])
def test_all_listeners_show_without_scrolling_at_the_default_size(qtbot, window, fake, monkeypatch, every_counter):
    monkeypatch.setattr(fake.service, "status", _every_listener(fake.service))
    if every_counter:   # the page scrolls below the listeners, the window keeps its size
        fake.service.counters.update({name: 1 for name in COUNTERS})
    window.server_tabs.setCurrentWidget(window.status_view)
    view = window.status_view
    qtbot.waitUntil(lambda: view.listeners.rowCount() == len(LISTENERS))
    qtbot.wait(50)
    table = view.listeners
    assert table.verticalScrollBar().maximum() == 0
    for row in range(table.rowCount()):
        rect = table.visualItemRect(table.item(row, 0))
        assert table.viewport().rect().contains(rect), f"row {row} is cut off"
    area = view.scroll_area
    top_left = table.mapTo(area.viewport(), table.rect().topLeft())
    assert area.viewport().rect().contains(table.rect().translated(top_left)), "the listeners table is cut off"
    assert window.size().toTuple() == (960, 620)
    words = {table.item(r, 0).text(): table.item(r, 5).text() for r in range(table.rowCount())}
    assert words == {spec.label: {"starttls": "STARTTLS", "implicit": "TLS"}[spec.tls.value]
                     for spec in LISTENERS.values()}
    assert "True" not in words.values() and "False" not in words.values()
    window.grab().save(str(Path(window.settings.fileName()).with_name("status.png")))


def test_the_counters_show_their_labels(qtbot, window, fake):
    fake.service.counters["pop3.bytes_retrieved"] = 5 * 2**20
    window.server_tabs.setCurrentWidget(window.status_view)
    view: StatusView = window.status_view
    qtbot.waitUntil(lambda: view.counter_text("pop3.bytes_retrieved") == "5.0 MB")
    shown = {label.text() for label in view.counters_box.findChildren(type(view.state_label))}
    for name in fake.service.counters:
        assert counter_label(name) + ":" in shown


def test_a_real_service_reports_only_counters_with_labels(service):
    """POP3 logons good and bad, a retrieval and a deletion, a message over SMTP: what the service counts."""
    address, password = "carol@counters.example", "Corr3ct-horse-9"
    service.add_mailbox(address, password)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=15) as smtp:
        smtp.sendmail("someone@remote.example", [address], "Subject: count me\r\n\r\nhello\r\n")
    pop = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=15)
    pop.stls(context)
    pop.user(address)
    with pytest.raises(poplib.error_proto):
        pop.pass_("wrong password")
    pop.quit()
    pop = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=15)
    pop.stls(context)
    pop.user(address)
    pop.pass_(password)
    pop.retr(1)
    pop.dele(1)
    pop.quit()
    counters = service.call("service.status")["counters"]
    for wanted in ("pop3.logons", "pop3.logon_failures", "pop3.messages_retrieved", "smtp_accepted"):
        assert wanted in counters
    assert sorted(set(counters) - set(COUNTERS)) == []
