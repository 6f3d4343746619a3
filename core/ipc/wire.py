"""The one converter from core's values to the admin channel's JSON (DESIGN §3).

``core`` answers with frozen dataclasses (core.model); the service's admin channel turns each
answer and each change event into JSON with ``to_wire`` just before it is sent, so the keys a
console or ``winpop`` sees are the dataclasses' field names, in order. A test double of the
channel uses the same function, so it cannot drift from the real wire shape.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def to_wire(value: Any) -> Any:
    """``value`` as JSON-ready data: a dataclass becomes an object of its fields, a tuple or list
    a list, a datetime ISO 8601 text; mappings are converted value by value; the rest as is."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_wire(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value
