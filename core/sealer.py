"""Sealing of secret settings: the one way a secret setting is stored and read back.

A secret setting (the catalog's ``secret`` flag: the directory bind password, the smart host
password) is stored as ``sealed:<base64>``, AES-256-GCM under the server key with the setting's
name as associated data, so a sealed value copied to another setting does not open. The service
loads the server key once (service/auth_methods.py) and hands one ``Sealer`` to whoever seals or
unseals.
"""
from __future__ import annotations

import base64
import binascii
from typing import Protocol

from core.errors import Unavailable

SEALED_PREFIX = "sealed:"
# The associated data of the settings sealed before this module existed, kept so that stored
# values still open; any other secret setting is bound to its own name.
_LEGACY_AAD = {"ldap_bind_password": b"pop3-service/setting:ldap_bind_password"}


class Key(Protocol):
    """What sealing needs of the server key (core.auth.keystore.ServerKey)."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, blob: bytes, aad: bytes) -> bytes: ...


def is_sealed(stored: object) -> bool:
    """Is ``stored`` a sealed value (as opposed to empty or a clear text)?"""
    return isinstance(stored, str) and stored.startswith(SEALED_PREFIX)


def aad_of(name: str) -> bytes:
    """The associated data a secret setting's value is sealed with."""
    return _LEGACY_AAD.get(name, name.encode("utf-8"))


class Sealer:
    """Seals and unseals the values of secret settings with the server key."""

    def __init__(self, key: Key) -> None:
        self.key = key

    def seal(self, name: str, secret: str) -> str:
        """The stored form of ``secret`` for the setting ``name``: ``sealed:<base64>``."""
        blob = self.key.encrypt(secret.encode("utf-8"), aad_of(name))
        return SEALED_PREFIX + base64.b64encode(blob).decode("ascii")

    def unseal(self, name: str, stored: str) -> str:
        """The secret a stored value holds; '' for none. A value that is not sealed (set by a test
        that wrote the database directly) is returned as it is."""
        if not stored:
            return ""
        if not is_sealed(stored):
            return stored
        try:
            blob = base64.b64decode(stored[len(SEALED_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise Unavailable(f"The stored value of '{name}' is damaged; set it again.") from None
        return self.key.decrypt(blob, aad_of(name)).decode("utf-8")
