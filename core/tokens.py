"""Admin tokens: the credentials of the network admin listener (``auth.login``).

A token is 32 random bytes (URL-safe base64, prefixed ``p3t_`` so it is recognisable in a
secrets scanner). Only its SHA-256 is stored; the token is returned once, by ``create``.
"""
from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select

from core.db import Database, affected_rows
from core.errors import AlreadyExists, NotFound
from core.names import check_token_name
from core.tables import AdminToken

TOKEN_PREFIX = "p3t_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


class AdminTokens:
    """Create, list, revoke and verify admin tokens."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, created_by: str = "") -> dict[str, Any]:
        """Make a token called ``name``; the result holds the token itself (shown only now)."""
        name = check_token_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as session:
            if session.scalars(select(AdminToken).where(AdminToken.name == name)).first() is not None:
                raise AlreadyExists(f"There is already a token called '{name}'; revoke it first or choose another "
                                    "name.")
            row = AdminToken(name=name, token_hash=token_hash(token), created_by=created_by[:200])
            session.add(row)
            session.flush()
            info = self._info(row)
        return dict(info, token=token)

    def list(self) -> list[dict[str, Any]]:
        with self.db.read() as session:
            return [self._info(r) for r in session.scalars(select(AdminToken).order_by(AdminToken.name))]

    def revoke(self, name: str) -> int:
        """Revoke the token called ``name`` (or with that id); returns how many were revoked."""
        key = str(name).strip()
        with self.db.write() as session:
            cond = AdminToken.name == key
            if key.isdigit():
                cond = cond | (AdminToken.id == int(key))
            count = affected_rows(session.execute(delete(AdminToken).where(cond)))
        if not count:
            raise NotFound(f"There is no token '{key}'.", hint="'winpop token list' shows them.")
        return count

    def verify(self, token: str, remote: str = "") -> str | None:
        """The name of the token, or None if it is not (or no longer) valid. Notes its use."""
        if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = token_hash(token)
        with self.db.write() as session:
            row = session.scalars(select(AdminToken).where(AdminToken.token_hash == digest)).first()
            if row is None or not secrets.compare_digest(row.token_hash, digest):
                return None
            row.last_used_at = datetime.now(UTC)
            row.last_used_from = remote[:64]
            return row.name

    @staticmethod
    def _info(row: AdminToken) -> dict[str, Any]:
        return {"id": row.id, "name": row.name, "created_by": row.created_by, "created_at": _iso(row.created_at),
                "last_used_at": _iso(row.last_used_at), "last_used_from": row.last_used_from}
