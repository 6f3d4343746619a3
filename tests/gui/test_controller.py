"""The console's controller without a window: connection, server facts, events into the models,
service control and the one status line for read failures."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from PySide6.QtWidgets import QWidget

from gui.controller import ConsoleController


@pytest.fixture
def controller(qtbot, fake) -> ConsoleController:
    parent = QWidget()
    qtbot.addWidget(parent)
    c = ConsoleController(fake, parent=parent)
    c.lists_outdated.connect(c.tree_model.reload)     # what the window does: read the tree again
    return c


def record(signal) -> list:
    seen: list = []
    signal.connect(lambda *args: seen.append(args[0] if len(args) == 1 else args))
    return seen


def connect(qtbot, controller: ConsoleController) -> None:
    controller.client.start()
    qtbot.waitUntil(lambda: controller.client.is_connected and controller.service_state == "running"
                    and bool(controller.server_settings) and bool(controller.server_info))


def test_connecting_reads_the_server_info_settings_and_state(qtbot, controller):
    changed, outdated, infos = (record(controller.connection_changed), record(controller.lists_outdated),
                                record(controller.server_info_changed))
    connect(qtbot, controller)
    assert changed == [True]
    assert len(outdated) == 1
    assert controller.server_info["hostname"] == "mail.contoso.com"
    assert infos and infos[-1]["hostname"] == "mail.contoso.com"
    assert controller.tree_model.server.label.startswith("mail.contoso.com")
    assert "auth" in controller.server_settings


def test_a_lost_service_clears_the_state_and_says_where_it_was_looked_for(qtbot, controller, fake):
    connect(qtbot, controller)
    changed = record(controller.connection_changed)
    fake.go_offline()
    assert changed == [False]
    assert controller.service_state == "unknown"
    assert "not reachable" in controller.disconnect_text()
    assert fake.location in controller.disconnect_text()


def test_events_reach_the_models_between_arrived_and_applied(qtbot, controller, fake):
    connect(qtbot, controller)
    qtbot.waitUntil(lambda: controller.tree_model.domain_node("contoso.com") is not None)
    order: list[tuple[str, bool]] = []
    controller.event_arrived.connect(
        lambda name, _d: order.append(("arrived", controller.tree_model.domain_node("new.example") is not None)))
    controller.event_applied.connect(
        lambda name, _d: order.append(("applied", controller.tree_model.domain_node("new.example") is not None)))
    fake.request("domain.add", {"name": "new.example"}, lambda _r: None, lambda _e: None)
    qtbot.waitUntil(lambda: ("applied", True) in order)
    assert order[:2] == [("arrived", False), ("applied", True)]


def test_a_settings_event_updates_the_settings_and_the_logging_level(qtbot, controller, fake):
    connect(qtbot, controller)
    levels = record(controller.logging_level_changed)
    fake.request("settings.set", {"name": "logging", "value": 3}, lambda _r: None, lambda _e: None)
    qtbot.waitUntil(lambda: controller.server_settings.get("logging") == 3)
    assert levels[-1] == 3


def test_service_control_follows_the_services_answer(qtbot, controller):
    connect(qtbot, controller)
    facts = record(controller.facts_changed)
    controller.control("stop")
    qtbot.waitUntil(lambda: controller.service_state == "stopped")
    assert facts
    controller.control("start")
    qtbot.waitUntil(lambda: controller.service_state == "running")


@pytest.mark.parametrize(("code", "shown"), [("unavailable", []),
                                             ("forbidden", ["Could not read from the service: no"])],
                         ids=["lost-service-is-the-banners", "other-errors-one-status-line"])
def test_read_failures_end_in_one_status_line(controller, code, shown):
    lines = record(controller.message)
    controller.report_read_failure(SimpleNamespace(code=code, message="no"))
    assert [line for line, _ms in lines] == shown


def test_listener_ports_prefer_the_services_report_then_the_settings(controller):
    controller.server_info = {"listeners": [{"name": "pop3", "port": 1110, "state": "running"},
                                            {"name": "smtps", "port": 465, "state": "disabled"}]}
    controller.server_settings = {"port": 110, "smtp_port": 2525, "smtps_port": 465}
    assert controller.listener_ports() == {"pop3": 1110, "smtps": 0, "smtp": 2525}
