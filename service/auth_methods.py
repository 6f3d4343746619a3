"""The running service's auth provider: built from the ``auth`` setting, switched when it changes.

``passwordfile``, ``local`` (PAM) and ``directory`` (LDAP) share one interface (core.auth);
this module chooses one, loads the server key (and so makes the service's one ``Sealer`` of
secret settings), and swaps the provider of the protocol servers and the admin operations after
``winpop set auth ...`` (or a changed ``ldap_*`` / ``pam_service`` setting) without a restart.
"""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError

from core.auth.directory import DirectoryConfig, DirectoryProvider
from core.auth.keystore import ServerKey
from core.auth.local import Accounts, LocalAccountProvider, SystemAccounts
from core.auth.provider import AuthMethod, PasswordFileProvider
from core.catalog import METHOD_SETTINGS
from core.db import Database
from core.errors import Unavailable
from core.names import AUTH_METHODS
from core.sealer import Sealer
from core.tables import Setting
from service.live_settings import SettingsReader

log = logging.getLogger("pop3svc.auth")

AVAILABLE_METHODS = AUTH_METHODS   # passwordfile, local, directory


KEY_CHECK_ROW = "_server_key_check"   # a row of the settings table, not a setting: which key sealed the secrets
_KEY_CHECK_TEXT = b"POP3 Service server key check"


def check_server_key(db: Database, key: ServerKey) -> str:
    """Whether ``key`` is the key this database's secrets are sealed with. The first start records a
    value sealed with its key; every later start, on any node, must be able to open it. Returns ""
    when it can (or it was just recorded), else what the administrator must do."""
    for _attempt in range(2):   # two nodes starting at once on a new database: one insert wins
        try:
            with db.write() as session:
                row = session.get(Setting, KEY_CHECK_ROW)
                if row is None:
                    sealed = key.encrypt(_KEY_CHECK_TEXT, KEY_CHECK_ROW.encode())
                    session.add(Setting(name=KEY_CHECK_ROW, value=json.dumps(base64.b64encode(sealed).decode())))
                    return ""
                stored = base64.b64decode(json.loads(row.value))
        except IntegrityError:
            continue
        try:
            key.decrypt(stored, KEY_CHECK_ROW.encode())
            return ""
        except Unavailable:
            return (f"This service's server key ({key.location or key.store}) is not the key the database's "
                    "stored secrets were sealed with, so APOP, CRAM-MD5 and NTLM logons and sealed settings "
                    "(smart host, directory passwords) fail here, and secrets set here fail on the other "
                    "nodes. Copy server.key from the first node into this data directory "
                    "(docs/DEPLOYMENT.md) and restart.")
    return ""


class AuthSource(Protocol):
    """Where the protocol servers find the auth provider in force now (it changes with the
    ``auth`` setting, without a restart)."""

    @property
    def provider(self) -> AuthMethod: ...


@dataclass(frozen=True)
class FixedAuth:
    """One provider for good (tests, tools): an AuthSource that never switches."""

    provider: AuthMethod


class AuthMethods:
    """Builds the provider the settings name and switches it when they change; ``on_switch``
    callbacks hear of each new provider (the admin operations follow it so)."""

    def __init__(self, db: Database, settings: SettingsReader, key: ServerKey, *, mailroot: Path,
                 accounts: Accounts | None = None) -> None:
        self.db = db
        self.settings = settings
        self.key = key
        self.mailroot = mailroot
        # The privileged helper's client (service.privhelper) when the service started as root;
        # None: the local method works in-process (a service run by an ordinary user).
        self.accounts = accounts
        # The server key is loaded once, by the composition root (service/app.py); secret settings
        # are sealed with it through this one Sealer, which the admin operations and SMTP share.
        self.sealer = Sealer(key)
        self.key_problem = check_server_key(db, key)
        if self.key_problem:
            log.error("%s", self.key_problem)
        self._fingerprint: tuple | None = None
        self._switched: list[Callable[[AuthMethod], None]] = []
        self._provider: AuthMethod = self.build(self._values())

    @property
    def provider(self) -> AuthMethod:
        """The provider in force now."""
        return self._provider

    def on_switch(self, callback: Callable[[AuthMethod], None]) -> None:
        """Call ``callback(provider)`` after every switch to a new provider."""
        self._switched.append(callback)

    def _fingerprint_of(self, values: dict[str, Any]) -> tuple:
        method = values["auth"]
        if method == "local":
            return (method, values.get("pam_service"))
        if method == "directory":
            return (method,) + tuple(values.get(n) for n in METHOD_SETTINGS if n.startswith("ldap_"))
        return (method,)

    def build(self, values: dict[str, Any]) -> AuthMethod:
        """The provider for ``values['auth']``."""
        method = values["auth"]
        self._fingerprint = self._fingerprint_of(values)
        root = self.mailroot
        if method == "local":
            accounts = self.accounts if self.accounts is not None else SystemAccounts()
            try:
                accounts.prepare()   # the PAM file and the pop3users group, made where missing
            except Exception as exc:  # noqa: BLE001 - not root: PAM falls back to 'other', useradd fails later
                log.warning("could not prepare the local accounts method: %s", getattr(exc, "message", exc))
            return LocalAccountProvider(self.db, mailroot=root, pam_service=str(values.get("pam_service") or ""),
                                        accounts=accounts)
        if method == "directory":
            return self.directory(values)
        return PasswordFileProvider(self.db, self.key, mailroot=root)

    def directory(self, values: dict[str, Any] | None = None) -> DirectoryProvider:
        """A directory provider over the current ``ldap_*`` settings (also used by mailbox.migrate)."""
        values = values if values is not None else self._values()
        return DirectoryProvider(self.db, DirectoryConfig.from_settings(values, self.sealer), mailroot=self.mailroot)

    def _values(self) -> dict[str, Any]:
        return {name: self.settings.get(name) for name in ("auth", *METHOD_SETTINGS)}

    def apply(self) -> None:
        """After a settings change: rebuild the provider if the method or its settings changed."""
        values = self._values()
        if self._fingerprint_of(values) == self._fingerprint:
            return
        old = self._provider
        try:
            provider = self.build(values)
        except Exception as exc:   # a bad setting must not take logons down: keep the old provider
            log.error("could not switch to the %r authentication method: %s", values["auth"],
                      getattr(exc, "message", exc))
            return
        self._provider = provider
        for callback in self._switched:
            callback(provider)
        if old is not provider:
            close_provider(old)
        log.warning("authentication method: %s", provider.method)

    def close(self) -> None:
        """At shutdown: let the provider in force go (LDAP connections)."""
        close_provider(self._provider)


def close_provider(provider: AuthMethod) -> None:
    """Let a provider go (the directory's holds connections; the others have nothing to close)."""
    provider.close()
