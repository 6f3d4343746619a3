"""Where a logon may happen: the rules of "Require SPA", "Require TLS for every logon" and the
trusted networks, in one place for POP3 and SMTP (DESIGN §6).

- SPA required: no password in clear; USER/PASS and AUTH PLAIN/LOGIN only inside TLS, the
  challenge-response mechanisms (APOP, CRAM-MD5, SCRAM-SHA-256, NTLM) anywhere.
- TLS required for every logon (``require_tls_logon``): no logon at all outside TLS, the
  challenge-response mechanisms included: a captured APOP, CRAM-MD5 or NTLM exchange lets an
  eavesdropper guess the password offline.
- Trusted networks (``trusted_networks``, like Dovecot's ``login_trusted_networks``): a client
  there counts as secure, so it may log on in plaintext without TLS (e.g. webmail on loopback).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import Invalid
from core.parsing import Network, in_networks, parse_networks


@dataclass(frozen=True)
class LogonRules:
    """The logon rules in force on one connection."""

    spa_required: bool
    require_tls: bool
    secure: bool          # inside TLS, or from a trusted network

    @classmethod
    def for_connection(cls, setting: Callable[[str], Any], *, tls: bool, address: str) -> LogonRules:
        """The rules for a client at ``address``, with or without TLS, from the current settings."""
        trusted = False if tls else in_networks(address, _cached_networks(str(setting("trusted_networks") or "")))
        return cls(spa_required=bool(setting("sparequired")), require_tls=bool(setting("require_tls_logon")),
                   secure=tls or trusted)

    @property
    def any_logon(self) -> bool:
        """May this connection log on at all?"""
        return self.secure or not self.require_tls

    @property
    def plaintext(self) -> bool:
        """May a password cross this connection (USER/PASS, AUTH PLAIN/LOGIN)?"""
        return self.secure or not (self.spa_required or self.require_tls)

    def mechanisms(self, provider: Any) -> list[str]:
        """The SASL mechanisms to advertise and accept here (the provider's, filtered)."""
        if provider is None or not self.any_logon:
            return []
        return list(provider.mechanisms(tls=self.secure, spa_required=self.spa_required or self.require_tls))

    @property
    def challenge_response(self) -> bool:
        """May APOP (and the other challenge-response mechanisms) be used here?"""
        return self.any_logon


_NETWORK_CACHE: dict[str, tuple[Network, ...]] = {}


def _cached_networks(text: str) -> tuple[Network, ...]:
    found = _NETWORK_CACHE.get(text)
    if found is None:
        try:
            found = parse_networks(text)
        except Invalid:
            found = ()
        if len(_NETWORK_CACHE) > 16:
            _NETWORK_CACHE.clear()
        _NETWORK_CACHE[text] = found
    return found
