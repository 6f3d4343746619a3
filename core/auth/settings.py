"""The settings of the ``local`` (PAM) and ``directory`` (LDAP) methods (DESIGN §4, §6).

Registered in the one settings registry when this module is imported (the service imports it
at start), so ``winpop set ldap_urls ...`` works before the method is switched. The directory's
bind password is sealed with the server key by the running service: the database holds
``sealed:<base64>``, and ``settings.get`` shows ``(set)``.
"""
from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.errors import Invalid
from core.settings import SettingSpec, _bool, _int_range, _text, register

SEALED_PREFIX = "sealed:"
SECRET_SHOWN = "(set)"          # what settings.get shows for a stored secret
BIND_PASSWORD_AAD = b"pop3-service/setting:ldap_bind_password"
SERVER_TYPES = ("openldap", "ad")
PAM_SERVICE_DEFAULT = "pop3-service"

_sealer: Callable[[str], str] | None = None


def install_sealer(sealer: Callable[[str], str] | None) -> None:
    """Let the running service encrypt the bind password given to ``settings.set``."""
    global _sealer
    _sealer = sealer


def unseal_b64(stored: str) -> bytes:
    """The encrypted blob of a ``sealed:<base64>`` value."""
    return base64.b64decode(stored[len(SEALED_PREFIX):])


def _pam_service(value: Any) -> str:
    text = _text(value) or PAM_SERVICE_DEFAULT
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise Invalid(f"'{text}' is not a PAM service name; give the name of a file in /etc/pam.d, "
                      f"such as {PAM_SERVICE_DEFAULT}.")
    return text


def parse_urls(value: Any) -> list[str]:
    """'ldap://a:389, ldaps://b' → the URLs in failover order; raises Invalid naming a bad one."""
    urls = [u for u in re.split(r"[\s,;]+", str(value or "").strip()) if u]
    for url in urls:
        if not re.fullmatch(r"(?i)ldaps?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?/?", url):
            raise Invalid(f"'{url}' is not an LDAP server URL; write ldap://host[:port] (with StartTLS) "
                          "or ldaps://host[:port].")
    return urls


def _urls(value: Any) -> str:
    return " ".join(parse_urls(value))


def _dn(value: Any) -> str:
    text = _text(value)
    if text and "=" not in text:
        raise Invalid(f"'{text}' is not a distinguished name; write it as dc=example,dc=com.")
    return text


def _ca_file(value: Any) -> str:
    text = _text(value)
    if text and not Path(text).is_absolute():
        raise Invalid(f"The CA file must be an absolute path, not '{text}'.")
    return text


def _server_type(value: Any) -> str:
    text = _text(value).lower()
    aliases = {"activedirectory": "ad", "active directory": "ad", "ldap": "openldap", "": "openldap"}
    text = aliases.get(text, text)
    if text not in SERVER_TYPES:
        raise Invalid("The directory type is 'openldap' (any LDAP v3 server) or 'ad' (Active Directory).")
    return text


def _user_filter(value: Any) -> str:
    text = _text(value)
    if not text:
        return ""
    if not (text.startswith("(") and text.endswith(")")) or text.count("(") != text.count(")"):
        raise Invalid(f"'{text}' is not an LDAP filter; write one such as (&(objectClass=inetOrgPerson)(mail={{address}})).")
    try:
        text.format(address="a@b.c", name="a", domain="b.c")
    except (KeyError, IndexError, ValueError):
        raise Invalid("The filter may use only the placeholders {address}, {name} and {domain}.") from None
    return text


def _secret(value: Any) -> str:
    text = "" if value is None else str(value)
    if not text or text.startswith(SEALED_PREFIX):
        return text
    if "\x00" in text or "\n" in text or "\r" in text:
        raise Invalid("The password may not contain NUL or line breaks.")
    # Without the running service's sealer (the console checking its field) the text passes
    # through; Admin.settings_set refuses to store a secret that is not sealed.
    return _sealer(text) if _sealer is not None else text


SPECS = (
    SettingSpec("pam_service", PAM_SERVICE_DEFAULT, _pam_service, "PAM service (local accounts)",
                help="the /etc/pam.d file logons are checked against; PAM falls back to 'other' when it is missing"),
    SettingSpec("ldap_urls", "", _urls, "Directory servers",
                help="ldap:// or ldaps:// URLs, tried in order (failover), such as ldap://dc1.example.com ldap://dc2"),
    SettingSpec("ldap_type", "openldap", _server_type, "Directory type",
                help="openldap (OpenLDAP or any LDAP v3 server) or ad (Active Directory)"),
    SettingSpec("ldap_starttls", True, _bool, "Use StartTLS on ldap:// URLs",
                help="1: upgrade ldap:// connections with StartTLS (ldaps:// is TLS from the start)"),
    SettingSpec("ldap_ca_file", "", _ca_file, "Directory CA certificates (PEM)",
                help="the CA that signed the directory's certificate; empty: the system's CAs"),
    SettingSpec("ldap_base_dn", "", _dn, "Directory base DN", help="where users are searched, such as dc=example,dc=com"),
    SettingSpec("ldap_bind_dn", "", _dn, "Directory bind DN",
                help="the account the service searches (and creates users) with"),
    SettingSpec("ldap_bind_password", "", _secret, "Directory bind password",
                help="stored encrypted with the server key; shown as (set)"),
    SettingSpec("ldap_user_filter", "", _user_filter, "Directory user filter",
                help="how a mailbox maps to an entry; placeholders {address}, {name}, {domain}. Empty: "
                     "(mail={address}) on OpenLDAP, (userPrincipalName={address}) on Active Directory"),
    SettingSpec("ldap_user_container", "", _dn, "Directory container for new users",
                help="where 'create associated user' adds entries; empty: the base DN"),
    SettingSpec("ldap_page_size", 500, _int_range(1, 10000), "Directory page size",
                help="entries per page when the service lists the directory"),
    SettingSpec("ldap_timeout", 5, _int_range(1, 120), "Directory timeout (s)",
                help="after this a directory server counts as unreachable and the next one is tried"),
    SettingSpec("ldap_bind_cache_seconds", 0, _int_range(0, 3600), "Cache successful directory logons (s)",
                help="0: off. Otherwise a successful logon is remembered (as a salted hash) for this long"),
)
NAMES = tuple(spec.name for spec in SPECS)
SECRET_SETTINGS = frozenset({"ldap_bind_password"})
for _spec in SPECS:
    register(_spec)


def shown(name: str, value: Any) -> Any:
    """A setting's value as ``settings.get`` and change events show it: secrets as ``(set)``."""
    if name in SECRET_SETTINGS:
        return SECRET_SHOWN if value else ""
    return value
