"""Starting, stopping, pausing and resuming the mail listeners at run time (``service.control``),
and where each listener listens: the command line's overrides for this run, else the settings."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from core.catalog import MAIL_LISTENERS
from core.errors import Invalid, NotFound, Unavailable
from core.parsing import EVERY_ADDRESS
from service.event_bus import Publisher
from service.listeners import Listener, ListenerState
from service.live_settings import SettingsReader

ACTIONS = ("start", "stop", "pause", "resume", "restart")
# listener name → the setting that holds its port (core/catalog.py)
PORT_SETTINGS = {spec.name: spec.port_setting for spec in MAIL_LISTENERS}


class ListenerAddresses:
    """The address and port of each mail listener: ``--bind`` and ``--<name>-port`` last for this
    run; without them the stored settings decide (read again at every start of a listener)."""

    def __init__(self, settings: SettingsReader, *, bind: str | None = None,
                 ports: Mapping[str, int] | None = None) -> None:
        self.settings = settings
        self.bind = bind
        self.ports = dict(ports or {})

    def port(self, name: str) -> int:
        override = self.ports.get(name)
        return int(override) if override is not None else int(self.settings.get(PORT_SETTINGS[name]))

    def host(self) -> str:
        """The listeners' address: ``--bind`` for this run, else the stored ``bind_address``."""
        if self.bind is not None:
            return self.bind or EVERY_ADDRESS
        return str(self.settings.get("bind_address") or EVERY_ADDRESS)


class ListenerControl:
    """Acts on one listener or all of them, and publishes the new state."""

    def __init__(self, listeners: Mapping[str, Listener], addresses: ListenerAddresses, events: Publisher,
                 status: Callable[[], dict[str, Any]]) -> None:
        self.listeners = listeners
        self.addresses = addresses
        self.events = events
        self.status = status

    async def __call__(self, action: str, name: str = "") -> None:
        """service.control: ``action`` (start, stop, pause, resume, restart) on listener ``name``, or
        on every listener when ``name`` is "" or "all"."""
        action = action.strip().lower()
        if action not in ACTIONS:
            raise Invalid(f"Unknown action '{action}'; use one of: {', '.join(ACTIONS)}.")
        if name == "all":   # a setting every listener follows (bind_address) names them so
            name = ""
        if name and name not in self.listeners:
            known = ", ".join(self.listeners) or "none"
            raise NotFound(f"There is no listener '{name}'. Listeners: {known}.")
        targets = [self.listeners[name]] if name else list(self.listeners.values())
        failures = []
        for listener in targets:
            if action in ("stop", "restart"):
                await listener.stop()
            if action in ("start", "restart"):
                if listener.state == ListenerState.PAUSED:
                    listener.resume()
                    continue
                if listener.state == ListenerState.STOPPED:
                    listener.port = self.addresses.port(listener.name)
                    listener.host = self.addresses.host()
                try:
                    await listener.start()
                except OSError:
                    failures.append(f"{listener.name}: {listener.error}")
            elif action == "pause":
                listener.pause()
            elif action == "resume":
                listener.resume()
        self.events.publish("service.state", self.status())
        if failures:
            raise Unavailable("Could not start " + "; ".join(failures) +
                              ". Choose a free port, or give the service the rights to bind it.")
