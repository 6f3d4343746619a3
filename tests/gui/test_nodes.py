"""Which actions apply to what: derived from the node kind, with the reason when they do not."""
from __future__ import annotations

import pytest

from gui.models.nodes import NodeKind, Target, action_states


def mailbox(name: str, *, locked: bool = False, domain_locked: bool = False) -> Target:
    return Target(NodeKind.MAILBOX, f"{name}@example.com",
                  {"name": name, "domain": "example.com", "locked": locked, "domain_locked": domain_locked})


SERVER = Target(NodeKind.SERVER, "server", {})
DOMAIN = Target(NodeKind.DOMAIN, "example.com", {"name": "example.com", "locked": False})
LOCKED_DOMAIN = Target(NodeKind.DOMAIN, "example.com", {"name": "example.com", "locked": True})


@pytest.mark.parametrize(("targets", "enabled", "disabled"), [
    ([SERVER], {"new_domain", "properties", "refresh", "help"}, {"lock", "unlock", "delete", "change_password",
                                                                 "new_mailbox"}),
    ([DOMAIN], {"lock", "delete", "new_mailbox", "properties"}, {"unlock", "change_password"}),
    ([LOCKED_DOMAIN], {"unlock", "delete"}, {"lock"}),
    ([mailbox("a"), mailbox("b", locked=True)], {"lock", "unlock", "delete"}, {"properties", "change_password"}),
    ([mailbox("a")], {"change_password", "properties", "lock"}, {"unlock"}),
], ids=["server", "domain", "locked-domain", "two-mailboxes", "one-mailbox"])
def test_actions_follow_the_kind_and_state(targets, enabled, disabled):
    states = action_states(targets, connected=True, context_domain=targets[0].domain, service_state="running")
    assert {n for n in enabled if states[n].enabled} == enabled
    assert {n for n in disabled if not states[n].enabled} == disabled
    assert all(states[n].reason for n in disabled)


def test_unlock_is_off_inside_a_locked_domain_and_says_why():
    states = action_states([mailbox("a", locked=True, domain_locked=True)], connected=True,
                           context_domain="example.com")
    assert not states["unlock"].enabled
    assert "domain example.com is locked" in states["unlock"].reason
    assert states["lock"].enabled is False and states["delete"].enabled


@pytest.mark.parametrize(("state", "on"), [
    ("running", {"stop", "pause", "restart"}),
    ("paused", {"start", "stop", "resume", "restart"}),   # Start resumes a paused service
    ("stopped", {"start"}),
], ids=["running", "paused", "stopped"])
def test_service_control_follows_the_service_state(state, on):
    states = action_states([SERVER], connected=True, service_state=state)
    assert {n for n in ("start", "stop", "pause", "resume", "restart") if states[n].enabled} == on


def test_everything_but_refresh_and_help_is_off_while_disconnected():
    states = action_states([DOMAIN], connected=False, context_domain="example.com")
    assert {n for n, s in states.items() if s.enabled} == {"refresh", "help"}
    assert "not connected" in states["lock"].reason
