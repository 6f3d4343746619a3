"""What the console shows and acts on: node kinds with their behaviour, and action rules.

Flags, context menus, the Action menu and the toolbar are all derived from here, so the rule
"Unlock is off for a mailbox inside a locked domain" is written once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class NodeKind(Enum):
    """A kind of thing in the snap-in: the root, the server, a domain, a mailbox (result row)."""

    ROOT = "root"
    SERVER = "server"
    DOMAIN = "domain"
    MAILBOX = "mailbox"
    REMOTE = "remote"        # a remembered server under the root; selecting it connects to it

    def can_delete(self) -> bool:
        return self in (NodeKind.DOMAIN, NodeKind.MAILBOX)

    def can_lock(self) -> bool:
        return self in (NodeKind.DOMAIN, NodeKind.MAILBOX)

    def has_properties(self) -> bool:
        return self in (NodeKind.SERVER, NodeKind.DOMAIN, NodeKind.MAILBOX)

    def can_change_password(self) -> bool:
        return self is NodeKind.MAILBOX

    def controls_service(self) -> bool:
        return self is NodeKind.SERVER

    def allows_multi_select(self) -> bool:
        """Lock, Unlock and Delete may act on many of these at once."""
        return self in (NodeKind.DOMAIN, NodeKind.MAILBOX)

    def help_topic(self) -> str:
        return {NodeKind.ROOT: "index", NodeKind.SERVER: "server", NodeKind.DOMAIN: "domain",
                NodeKind.MAILBOX: "mailbox", NodeKind.REMOTE: "connect"}[self]

    def noun(self, count: int = 1) -> str:
        word = {NodeKind.ROOT: "console root", NodeKind.SERVER: "server", NodeKind.DOMAIN: "domain",
                NodeKind.MAILBOX: "mailbox", NodeKind.REMOTE: "remembered server"}[self]
        if count == 1:
            return word
        return "mailboxes" if self is NodeKind.MAILBOX else word + "s"


@dataclass(frozen=True)
class Target:
    """One thing an action applies to: its kind, its key (domain name or address) and its data."""

    kind: NodeKind
    key: str = ""
    data: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def locked(self) -> bool:
        return bool(self.data.get("locked"))

    @property
    def domain(self) -> str:
        """The domain this target belongs to (or is), '' for the root and the server."""
        if self.kind is NodeKind.DOMAIN:
            return self.key
        if self.kind is NodeKind.MAILBOX:
            return str(self.data.get("domain", self.key.partition("@")[2]))
        return ""

    @property
    def label(self) -> str:
        if self.kind is NodeKind.DOMAIN:
            return str(self.data.get("display_name") or self.key)
        return self.key


@dataclass(frozen=True)
class ActionState:
    """Whether an action can run on the current targets, and if not, why (for the tooltip)."""

    enabled: bool
    reason: str = ""


ON = ActionState(True)


def _off(reason: str) -> ActionState:
    return ActionState(False, reason)


def action_states(targets: list[Target], *, connected: bool, context_domain: str = "",
                  service_state: str = "") -> dict[str, ActionState]:
    """The state of every snap-in action for ``targets`` (the selection of the focused pane)."""
    kinds = {t.kind for t in targets}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    many = len(targets) > 1
    states: dict[str, ActionState] = {"refresh": ON, "help": ON}
    if not connected:
        down = _off("The console is not connected to the POP3 Service.")
        for name in ("new_domain", "new_mailbox", "lock", "unlock", "delete", "change_password",
                     "client_settings", "properties", "start", "stop", "pause", "resume", "restart"):
            states[name] = down
        return states

    states["new_domain"] = ON
    states["new_mailbox"] = ON if context_domain else _off("Select a domain to add a mailbox to it.")

    if not targets or kind is None:
        nothing = _off("Select one kind of item.") if targets else _off("Select a domain or a mailbox.")
        for name in ("lock", "unlock", "delete"):
            states[name] = nothing
    elif not kind.can_lock():
        states["lock"] = states["unlock"] = _off(f"A {kind.noun()} cannot be locked; select domains or mailboxes.")
        states["delete"] = _off(f"The {kind.noun()} cannot be deleted.")
    else:
        unlocked = [t for t in targets if not t.locked]
        locked = [t for t in targets if t.locked]
        states["lock"] = ON if unlocked else _off(
            f"{'All the selected ' + kind.noun(2) + ' are' if many else 'The ' + kind.noun() + ' is'} already locked.")
        if kind is NodeKind.MAILBOX and targets and all(t.data.get("domain_locked") for t in targets):
            states["unlock"] = _off(f"The domain {targets[0].domain} is locked: while a domain is locked its "
                                    "mailboxes cannot be unlocked. Unlock the domain instead.")
        elif kind is NodeKind.MAILBOX and locked and all(t.data.get("domain_locked") for t in locked):
            states["unlock"] = _off("The locked mailboxes are in a locked domain; unlock the domain instead.")
        else:
            which = f"None of the selected {kind.noun(2)} is" if many else f"The {kind.noun()} is not"
            states["unlock"] = ON if locked else _off(f"{which} locked.")
        states["delete"] = ON

    single = targets[0] if len(targets) == 1 else None
    if single and single.kind.can_change_password():
        states["change_password"] = states["client_settings"] = ON
    else:
        states["change_password"] = _off("Select one mailbox to change its password.")
        states["client_settings"] = _off("Select one mailbox to see what its mail client needs.")
    if single and single.kind.has_properties():
        states["properties"] = ON
    else:
        states["properties"] = _off("Select one item to see its properties.")

    state = service_state or "unknown"
    # Start on a paused service resumes it (service.control starts what is stopped, resumes what is paused).
    states["start"] = ON if state in ("stopped", "paused", "unknown", "partial") else _off(
        "The service is already running.")
    states["stop"] = ON if state in ("running", "paused", "partial", "unknown") else _off("The service is stopped.")
    states["pause"] = ON if state == "running" else _off("Only a running service can be paused.")
    states["resume"] = ON if state == "paused" else _off("The service is not paused.")
    states["restart"] = ON if state in ("running", "paused", "partial", "unknown") else _off(
        "The service is stopped; use Start.")
    return states
