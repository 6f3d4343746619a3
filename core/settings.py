"""The stored server properties: their values in the ``settings`` table, as JSON.

What settings exist (names, defaults, checks, labels, secrets) is the catalog (core/catalog.py);
this module reads and writes their values inside a database session. ``winpop get/set`` and the
console's Server Properties reach it through the admin channel (core/admin.py).

Each stored setting has a version (core.tables.Setting): ``put`` raises it by one whenever the
value really changes, whoever writes it (the admin channel, the setup, a migration), so a property
sheet that read version n can ask for "set it, if it is still at n" (core.admin.Admin.settings_set).
"""
from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.catalog import SETTINGS, resolve
from core.hostname import machine_name
from core.parsing import EVERY_ADDRESS
from core.tables import Setting

__all__ = ["EVERY_ADDRESS", "Settings", "default_hostname"]


def default_hostname() -> str:
    """The host name a new installation starts with: the machine's own (see core.hostname)."""
    return machine_name()


class Settings:
    """Read and write settings inside a database session."""

    @staticmethod
    def get_all(session: Session) -> dict[str, Any]:
        """Every setting of the catalog: its stored value, else its default."""
        values = {name: spec.default for name, spec in SETTINGS.items()}
        for row in session.scalars(select(Setting)):
            if row.name in values:
                values[row.name] = json.loads(row.value)
        return values

    @staticmethod
    def versions(session: Session) -> dict[str, int]:
        """The version of every setting of the catalog: 0 for one never stored."""
        versions = dict.fromkeys(SETTINGS, 0)
        for name, version in session.execute(select(Setting.name, Setting.version)):
            if name in versions:
                versions[name] = version
        return versions

    @staticmethod
    def get(session: Session, name: str) -> Any:
        spec = resolve(name)
        row = session.get(Setting, spec.name)
        return json.loads(row.value) if row is not None else spec.default

    @staticmethod
    def version(session: Session, name: str, *, lock: bool = False) -> int:
        """The version of one setting (0: never stored). ``lock``: hold its row until the
        transaction ends (PostgreSQL; SQLite writers hold the whole database anyway)."""
        row = session.get(Setting, resolve(name).name, with_for_update=lock)
        return row.version if row is not None else 0

    @staticmethod
    def put(session: Session, name: str, value: Any) -> int:
        """Store an already-checked value (no writability check: internal use); its new version.
        Storing the value it already has changes nothing, its version included."""
        spec = resolve(name)
        row = session.get(Setting, spec.name, with_for_update=True)
        encoded = json.dumps(value)
        if row is None:
            session.add(Setting(name=spec.name, value=encoded, version=1))
            return 1
        if row.value != encoded:
            row.value = encoded
            row.version = (row.version or 0) + 1
        return row.version
