"""The stored server properties: their values in the ``settings`` table, as JSON.

What settings exist (names, defaults, checks, labels, secrets) is the catalog (core/catalog.py);
this module reads and writes their values inside a database session. ``winpop get/set`` and the
console's Server Properties reach it through the admin channel (core/admin.py).
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
    def get(session: Session, name: str) -> Any:
        spec = resolve(name)
        row = session.get(Setting, spec.name)
        return json.loads(row.value) if row is not None else spec.default

    @staticmethod
    def put(session: Session, name: str, value: Any) -> Any:
        """Store an already-checked value (no writability check: internal use)."""
        spec = resolve(name)
        row = session.get(Setting, spec.name)
        encoded = json.dumps(value)
        if row is None:
            session.add(Setting(name=spec.name, value=encoded))
        else:
            row.value = encoded
        return value
