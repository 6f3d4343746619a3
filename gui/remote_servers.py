"""Remembered remote servers: names and certificate fingerprints in the console's settings, admin
tokens only in a secure system keyring.

A token is a password: it is kept with ``keyring`` when the system has a keyring that encrypts
(Secret Service, KWallet, macOS Keychain ...; the same test as the service's key store uses), and
otherwise not kept at all: the console says so and asks again next time. There is no plaintext
fallback (``keyrings.alt`` and the like are refused). Fingerprints are not secrets: they sit in
the settings file with the server names.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QSettings

from core.ipc.protocol import DEFAULT_TCP_PORT, split_host_port
from core.keyrings import is_secure_backend

log = logging.getLogger(__name__)

KEYRING_SERVICE = "pop3-service-console"
REMEMBERED_KEY = "remote/servers"
REMEMBERED_MAX = 10


@dataclass(frozen=True)
class RemoteServer:
    """Another computer's remote administration listener."""

    host: str
    port: int = DEFAULT_TCP_PORT

    @property
    def key(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def label(self) -> str:
        return self.host if self.port == DEFAULT_TCP_PORT else self.key

    @classmethod
    def parse(cls, text: str, default_port: int = DEFAULT_TCP_PORT) -> RemoteServer | None:
        """'mail.example.com', 'mail.example.com:9110', '[::1]:9110' → a server; None if not."""
        parsed = split_host_port(text, default_port)
        if parsed is None:
            return None
        return cls(parsed[0].lower(), parsed[1])


# -- the list and the fingerprints (QSettings) -------------------------------------------------------
def remembered(settings: QSettings) -> list[RemoteServer]:
    value = settings.value(REMEMBERED_KEY)
    items = value if isinstance(value, (list, tuple)) else ([value] if value else [])
    out = []
    for item in items:
        server = RemoteServer.parse(str(item))
        if server is not None and server not in out:
            out.append(server)
    return out


def remember(settings: QSettings, server: RemoteServer) -> list[RemoteServer]:
    """Put ``server`` first in the remembered list (at most 10)."""
    servers = [server] + [s for s in remembered(settings) if s != server]
    servers = servers[:REMEMBERED_MAX]
    settings.setValue(REMEMBERED_KEY, [s.key for s in servers])
    return servers


def forget(settings: QSettings, server: RemoteServer, vault: TokenVault | None = None) -> None:
    """Remove ``server`` from the remembered list, with its pinned certificate and its token."""
    settings.setValue(REMEMBERED_KEY, [s.key for s in remembered(settings) if s != server])
    settings.remove(_fingerprint_key(server))
    (vault if vault is not None else TokenVault()).forget(server)
    settings.sync()   # removed means gone at the next start, even if the console does not end cleanly


def _fingerprint_key(server: RemoteServer) -> str:
    return "remote/fingerprint/" + server.key.replace("/", "_").replace(":", "_")


def pinned_fingerprint(settings: QSettings, server: RemoteServer) -> str:
    value = settings.value(_fingerprint_key(server))
    return str(value) if value else ""


def pin_fingerprint(settings: QSettings, server: RemoteServer, fingerprint: str) -> None:
    settings.setValue(_fingerprint_key(server), fingerprint)


# -- tokens (keyring) ----------------------------------------------------------------------------
class TokenVault:
    """Admin tokens in the system keyring, if (and only if) it is a secure one."""

    def __init__(self, backend: Any = None) -> None:
        self._backend = backend
        self.reason = ""
        if backend is None:
            self._backend = self._secure_backend()

    def _secure_backend(self) -> Any:
        try:
            # Optional at run time, as for the service's key store: without a usable keyring package
            # the console keeps no token and says why.
            import keyring  # noqa: PLC0415

            backend = keyring.get_keyring()
        except Exception as exc:  # noqa: BLE001 - no keyring package or no backend at all
            self.reason = f"no system keyring ({exc})"
            return None
        if not is_secure_backend(backend):
            self.reason = ("this computer has no secure system keyring (such as GNOME Keyring or KWallet); "
                           "tokens are never written to a plain file")
            return None
        return backend

    @property
    def available(self) -> bool:
        return self._backend is not None

    def load(self, server: RemoteServer) -> str:
        if self._backend is None:
            return ""
        try:
            return self._backend.get_password(KEYRING_SERVICE, server.key) or ""
        except Exception as exc:  # noqa: BLE001 - a locked or broken keyring: ask the user instead
            log.warning("could not read the token for %s from the keyring: %s", server.key, exc)
            return ""

    def save(self, server: RemoteServer, token: str) -> bool:
        if self._backend is None:
            return False
        try:
            self._backend.set_password(KEYRING_SERVICE, server.key, token)
            return True
        except Exception as exc:  # noqa: BLE001
            self.reason = f"the keyring refused to store it ({exc})"
            log.warning("could not store the token for %s: %s", server.key, exc)
            return False

    def forget(self, server: RemoteServer) -> None:
        if self._backend is None:
            return
        try:
            self._backend.delete_password(KEYRING_SERVICE, server.key)
        except Exception:  # noqa: BLE001 - nothing stored
            pass
