"""The server properties as the running service sees them: read from the database at start and
after every change, never on the event loop (issue 14)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from core.catalog import SETTINGS
from core.db import Database
from core.settings import Settings
from service.listeners import Limits

log = logging.getLogger(__name__)


class SettingsReader(Protocol):
    """The slice of LiveSettings most parts need: a setting's current value by name."""

    def get(self, name: str) -> Any: ...


class LiveSettings:
    """A cache of every setting, refreshed by ``reload`` (blocking: off the loop); ``apply`` then
    tells the parts that act on a change (log level, host name, auth method, TLS files ...)."""

    def __init__(self, db: Database, values: Mapping[str, Any], *, fallback_hostname: str) -> None:
        self._db = db
        self._values: dict[str, Any] = dict(values)
        self._fallback_hostname = fallback_hostname
        self._subscribers: list[Callable[[], None]] = []

    @classmethod
    def load(cls, db: Database, *, fallback_hostname: str) -> LiveSettings:
        """Read every setting now (blocking)."""
        with db.read() as session:
            values = Settings.get_all(session)
        return cls(db, values, fallback_hostname=fallback_hostname)

    def get(self, name: str) -> Any:
        """A setting's value from the cache: a lookup, never a database read. KeyError for a name
        that is not a setting."""
        try:
            return self._values[name]
        except KeyError:
            return SETTINGS[name].default

    @property
    def hostname(self) -> str:
        """The server's name in greetings, Received: lines and HELO: the setting, else the machine's."""
        return str(self._values.get("hostname") or self._fallback_hostname)

    def limits(self) -> Limits:
        """The mail listeners' connection limits."""
        return Limits(total=int(self.get("max_connections")), per_address=int(self.get("max_connections_per_ip")))

    def reload(self) -> None:
        """Read every setting from the database into the cache. Blocking: call it off the loop."""
        with self._db.read() as session:
            self._values = Settings.get_all(session)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (off the loop) whenever ``apply`` runs after a change."""
        self._subscribers.append(callback)

    def apply(self) -> None:
        """After ``reload``: let every part act on what changed, in the order they subscribed.
        Blocking (a new auth method reads key files, TLS reads PEM files): call it off the loop."""
        for callback in list(self._subscribers):
            callback()
