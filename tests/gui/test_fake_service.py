"""The test double (tests/fake_service.py) against the op table and the real service: it implements
every op the console sends, with the table's parameters, and answers in the real service's shapes
(the same keys, the same JSON types), so widget tests against it mean something."""
from __future__ import annotations

import smtplib
from typing import Any

import pytest

from core.errors import MailError
from core.ipc.ops import OPS
from tests.fake_service import FakeService, demo_service
from tests.support import free_port, unverified_tls, wait_for
from tests.test_op_table_users import _all_sent

PASSWORD = "Secret-123x"
# Maps from a name to a value, not records. counters: a service counts only what happened (a fresh
# one has none), so only the types are compared. settings.get: until every setting is in the core
# catalog the fake knows only that catalog's; the names it has must be the service's.
MAPS = {"counters": False, "settings.get": True,   # True: the fake's names must be the service's
        "values": True, "versions": True}           # settings.snapshot


def shape_differences(real: Any, fake: Any, path: str) -> list[str]:
    """Where ``fake`` has other keys or other JSON types than ``real`` (None fits any type)."""
    if real is None or fake is None:
        return []
    if isinstance(real, dict) and isinstance(fake, dict):
        name = path.rsplit(".", 1)[-1] if "." in path else path
        if name in MAPS or path in MAPS:
            strict = MAPS.get(name, MAPS.get(path))
            found = [f"{path}.{k}: not in the service" for k in sorted(set(fake) - set(real)) if strict]
            return found + [d for k in sorted(set(real) & set(fake))
                            for d in shape_differences(real[k], fake[k], f"{path}.{k}")]
        found = [f"{path}.{k}: only the service has it" for k in sorted(set(real) - set(fake))]
        found += [f"{path}.{k}: only the fake has it" for k in sorted(set(fake) - set(real))]
        return found + [d for k in sorted(set(real) & set(fake))
                        for d in shape_differences(real[k], fake[k], f"{path}.{k}")]
    if isinstance(real, list) and isinstance(fake, list):
        return shape_differences(real[0], fake[0], f"{path}[0]") if real and fake else []
    if type(real) is not type(fake):
        return [(f"{path}: the service answers {type(real).__name__} ({real!r}), the fake "
                 f"{type(fake).__name__} ({fake!r})")]
    return []


def test_shape_differences_finds_keys_and_types():
    assert shape_differences({"a": 1, "b": [{"c": True}]}, {"a": 2, "b": [{"c": False}]}, "op") == []
    assert shape_differences({"a": 1}, {"a": "1", "z": 0}, "op") == [
        "op.z: only the fake has it", "op.a: the service answers int (1), the fake str ('1')"]
    assert shape_differences({"a": True}, {"a": 1}, "op") != []      # a flag is no number
    assert shape_differences({"a": None, "b": []}, {"a": 3, "b": [1]}, "op") == []


def test_the_fake_implements_every_op_the_console_sends():
    console = {op for rel, _line, ops, _p, _k in _all_sent() if rel.startswith("gui/") and isinstance(ops, list)
               for op in ops}
    implemented = {name for name in OPS if hasattr(FakeService, "op_" + name.replace(".", "_"))}
    assert console - implemented == set()
    helpers = {name[3:] for name in dir(FakeService) if name.startswith("op_")}
    assert helpers == {name.replace(".", "_") for name in implemented}, "an op_ method for an op not in the table"


def test_the_fake_checks_parameters_with_the_table():
    with pytest.raises(MailError, match="needs the parameter 'name'"):
        FakeService().call("domain.add", {})
    with pytest.raises(MailError, match="Unknown operation"):
        FakeService().call("domain.explode", {})


# The same requests to both, in this order; each answer is compared.
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("domain.add", {"name": "example.com"}),
    ("mailbox.add", {"address": "alice@example.com", "password": PASSWORD}),
    ("mailbox.add", {"address": "bob@example.com", "password": PASSWORD, "quota": "10MB"}),
    ("domain.list", {}), ("domain.list", {"limit": 1, "sort": "size", "descending": True}),
    ("domain.get", {"name": "example.com"}),
    ("mailbox.list", {"domain": "example.com"}), ("mailbox.get", {"address": "alice@example.com"}),
    ("mailbox.lock", {"address": "alice@example.com"}), ("mailbox.unlock", {"address": "alice@example.com"}),
    ("domain.lock", {"name": "example.com"}), ("domain.unlock", {"name": "example.com"}),
    ("mailbox.set_password", {"address": "alice@example.com", "password": "Other-456y"}),
    ("mailbox.set_quota", {"address": "alice@example.com", "quota": 1000000}),
    ("settings.get", {}), ("settings.get", {"name": "logging"}), ("settings.describe", {}),
    ("settings.set", {"name": "logging", "value": 2}), ("settings.set", {"name": "queue_lifetime", "value": "3600"}),
    ("settings.snapshot", {}), ("settings.set", {"name": "logging", "value": 3, "expected_version": 1}),
    ("service.status", {}), ("server.info", {}),
    ("service.control", {"action": "pause"}), ("service.control", {"action": "resume"}),
    ("service.control", {"action": "restart", "listener": "pop3"}),
    ("stat", {}), ("stat", {"domain": "example.com"}),
    ("audit.list", {"limit": 5}), ("log.recent", {"limit": 5}),
    ("ban.list", {}), ("ban.lift", {"value": "192.0.2.1"}),
    ("relay.test", {}), ("queue.retry", {}),
    ("admin.token_create", {"name": "t1"}), ("admin.token_list", {}), ("admin.token_revoke", {"name": "t1"}),
    ("tls.generate", {"hostname": "mail.example.com"}), ("auth.login", {"token": "unused"}),
    ("events.subscribe", {}), ("stats.history", {}), ("stats.history", {"minutes": 1440}),
    ("mailbox.delete", {"address": "bob@example.com"}),
]
# Lists the fake starts empty: their items are compared with the demo service's.
DEMO_LISTS = [("log.recent", {"limit": 5}), ("queue.list", {})]


def _queue_one(service) -> int:
    """Submit a message for another server that is down: it stays in the outgoing queue."""
    service.call("settings.set", name="smtp_routes", value=f"elsewhere.example=127.0.0.1:{free_port()}")
    with smtplib.SMTP_SSL("127.0.0.1", service.ports["smtps"], timeout=10, context=unverified_tls()) as smtp:
        smtp.login("alice@example.com", "Other-456y")
        smtp.sendmail("alice@example.com", ["bob@elsewhere.example"],
                      b"From: alice@example.com\r\nTo: bob@elsewhere.example\r\nSubject: held\r\n\r\nHi.\r\n")
    items = wait_for(lambda: service.call("queue.list")["items"], what="the message in the queue")
    return int(items[0]["id"])


def test_the_fake_answers_in_the_real_services_shapes(service):
    fake = FakeService()
    problems: list[str] = []
    for op, params in CALLS:
        real = service.call(op, **params)
        answer, _events = fake.call(op, dict(params))
        problems += shape_differences(real, answer, op)
    demo = demo_service()
    ident = _queue_one(service)
    for op, params in [*DEMO_LISTS, ("queue.show", {"id": ident})]:
        real = service.call(op, **params)
        answer, _events = demo.call(op, {"id": 17} if op == "queue.show" else dict(params))
        problems += shape_differences(real, answer, f"{op} (demo)")
    # stats.history: a fresh service has only gaps (null), so compare names, lengths and value types.
    real, (fake_history, _events) = service.call("stats.history", minutes=7), demo.call("stats.history", {"minutes": 7})
    assert list(real["series"]) == list(fake_history["series"])
    assert [len(v) for v in real["series"].values()] == [len(v) for v in fake_history["series"].values()] == [7] * 7
    assert all(v is None or type(v) is int for values in fake_history["series"].values() for v in values)
    assert not problems, "\n".join(problems)


def test_the_fake_refuses_a_stale_version_and_publishes_versions_as_the_service_does(service):
    """settings.set with an old expected_version: both refuse it ('conflict') and change nothing;
    both publish settings.changed with the same keys and types."""
    fake = FakeService()
    with service.client() as watcher:
        watcher.call("events.subscribe")
        for call in (lambda op, **p: service.call(op, **p), lambda op, **p: fake.call(op, p)[0]):
            call("settings.set", name="idle_timeout", value=900)
            call("settings.set", name="idle_timeout", value=1200)
        real_event = next(e for e in iter(watcher.next_event, None) if e["event"] == "settings.changed")
    _answer, fake_events = fake.call("settings.set", {"name": "idle_timeout", "value": 900})
    assert shape_differences(real_event["data"], dict(fake_events)["settings.changed"], "settings.changed") == []
    for refuse in (lambda: service.call("settings.set", name="idle_timeout", value=600, expected_version=1),
                   lambda: fake.call("settings.set", {"name": "idle_timeout", "value": 600, "expected_version": 1})):
        with pytest.raises(MailError) as refused:
            refuse()
        assert refused.value.code == "conflict" and "changed" in refused.value.message
    assert service.call("settings.get", name="idle_timeout") == {"idle_timeout": 1200}
    assert fake.settings["idle_timeout"] == 900
