"""The server properties (DESIGN §4): one registry of names, types, defaults and checks.

Stored in the ``settings`` table as JSON; ``winpop get/set`` and the console's Server Properties
read and write them through the admin channel. Issues that add settings add specs here.
"""
from __future__ import annotations

import errno
import ipaddress
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from typing import TYPE_CHECKING

from core.errors import Invalid, NotFound
from core.hostname import machine_name
from core.names import check_auth_method

if TYPE_CHECKING:  # the console imports the specs without the database layer
    from sqlalchemy.orm import Session


def _int_range(lo: int, hi: int, unit: str = "") -> Callable[[Any], int]:
    """A check for a whole number from ``lo`` to ``hi`` (of ``unit``, named in the refusal)."""
    of_unit = f" of {unit}" if unit else ""
    wanted = f"{lo} to {hi} {unit}".rstrip() if unit else f"a number from {lo} to {hi}"

    def check(value: Any) -> int:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise Invalid(f"'{value}' is not a whole number{of_unit}; give {wanted}.") from None
        if not lo <= number <= hi:
            raise Invalid(f"{number} is out of range; give {wanted}.")
        return number
    return check


whole_number = _int_range


def _port(value: Any) -> int:
    return _int_range(0, 65535)(value)


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise Invalid(f"'{value}' is not a yes/no value; give 1 or 0.")


def _optional_size(value: Any) -> int | None:
    if value is None or str(value).strip().lower() in ("", "none", "0", "unlimited"):
        return None
    text = str(value).strip().upper()
    factor = 1
    for suffix, mult in (("KB", 1024), ("MB", 1024**2), ("GB", 1024**3), ("K", 1024), ("M", 1024**2), ("G", 1024**3)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)].strip(), mult
            break
    try:
        number = int(text) * factor
    except ValueError:
        raise Invalid(f"'{value}' is not a size; give bytes or a number with KB, MB or GB.") from None
    if number < 0:
        raise Invalid("A size cannot be negative.")
    return number


def _size(value: Any) -> int:
    number = _optional_size(value)
    if number is None:
        raise Invalid("This size cannot be unlimited; give bytes or a number with KB, MB or GB.")
    return number


def _text(value: Any) -> str:
    text = str(value)
    if "\x00" in text or "\n" in text:
        raise Invalid("The value may not contain NUL or line breaks.")
    return text.strip()


def _keystore(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ("keyring", "keyfile"):
        raise Invalid("The key store is 'keyring' (the system keyring) or 'keyfile' (a root-only file).")
    return text


EVERY_ADDRESS = "0.0.0.0"


def bind_address(value: Any) -> str:
    """'' (every address) or an IP address of this machine: the one the mail listeners bind."""
    text = _text(value)
    if not text:
        return ""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"'{text}' is not an IP address; give one of this computer's addresses (e.g. 127.0.0.1 "
                      "or 192.168.1.5), or nothing for every address.") from None
    if address.is_unspecified:     # 0.0.0.0 or :: : every address
        return str(address)
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    # Binding port 0 (never listening) is how to ask the kernel whether the address is ours.
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise Invalid(f"{address} is not an address of this computer; give one it has (see 'ip address'), "
                              "or nothing for every address.") from None
            raise Invalid(f"Cannot use {address}: {exc.strerror}.") from None
    return str(address)


@dataclass(frozen=True)
class SettingSpec:
    """One server property: its name, default, check, and whether changing it restarts listeners."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    label: str
    aliases: tuple[str, ...] = ()
    restart: str | None = None        # listener whose restart the change needs, or None
    writable: bool = True
    help: str = field(default="", compare=False)


SPECS: dict[str, SettingSpec] = {}


def register(spec: SettingSpec) -> SettingSpec:
    SPECS[spec.name] = spec
    return spec


for _spec in (
    SettingSpec("auth", "passwordfile", check_auth_method, "Authentication method", ("authentication",),
                help="passwordfile, local or directory; changeable only while no domain exists"),
    SettingSpec("port", 110, _port, "POP3 port", ("pop3port",), restart="pop3"),
    SettingSpec("pop3s_port", 995, _port, "POP3 over TLS port", restart="pop3s"),
    SettingSpec("smtp_port", 25, _port, "SMTP port", restart="smtp"),
    SettingSpec("submission_port", 587, _port, "SMTP submission port", restart="submission"),
    SettingSpec("smtps_port", 465, _port, "SMTP over TLS port", restart="smtps"),
    SettingSpec("logging", 2, _int_range(0, 3), "Logging level", ("loglevel",),
                help="0 None, 1 Minimum, 2 Medium, 3 Maximum"),
    SettingSpec("mailroot", "", _text, "Root mail directory", ("mailroot_dir",),
                help="the service moves to it at once; it never moves mail itself, so the folder must "
                     "already hold a copy of the existing mail (or no mailbox may hold mail)"),
    SettingSpec("sparequired", True, _bool, "Require secure password authentication",
                help="no password in clear: plaintext logons only inside TLS. With local accounts or a "
                     "directory only plaintext logons exist (PAM and LDAP keep no reusable secret), so "
                     "this means TLS is required"),
    SettingSpec("createuser", False, _bool, "Always create an associated user for new mailboxes"),
    SettingSpec("keystore", "keyfile", _keystore, "Server key store", writable=False,
                help="where the key that encrypts password equivalents lives"),
    SettingSpec("hostname", "", _text, "Server host name", help="empty: the machine's name"),
    SettingSpec("bind_address", "", bind_address, "Listen on address", restart="all",
                help="the IP address the mail listeners bind; empty: every address. 'python main.py service "
                     "--bind ADDR' overrides it for one run"),
    SettingSpec("default_quota", None, _optional_size, "Default mailbox quota",
                help="bytes (or KB/MB/GB) for new mailboxes; 0 = none"),
    SettingSpec("max_message_size", 25 * 1024 * 1024, _size, "Maximum message size"),
    SettingSpec("idle_timeout", 600, _int_range(600, 86400), "Idle session timeout (s)",
                help="RFC 1939: at least 10 minutes"),
    SettingSpec("max_connections", 500, _int_range(1, 100000), "Maximum connections"),
    SettingSpec("max_connections_per_ip", 20, _int_range(1, 10000), "Maximum connections per address"),
    SettingSpec("admin_group", "", _text, "Admin group", help="members may use the admin channel"),
    SettingSpec("tls_cert", "", _text, "TLS certificate (PEM)", restart="tls"),
    SettingSpec("tls_key", "", _text, "TLS private key (PEM)", restart="tls"),
):
    register(_spec)


def resolve(name: str) -> SettingSpec:
    """Find a setting by name or alias (case-insensitive)."""
    key = str(name).strip().lower()
    if key in SPECS:
        return SPECS[key]
    for spec in SPECS.values():
        if key in spec.aliases:
            return spec
    known = ", ".join(sorted(SPECS))
    raise NotFound(f"There is no setting '{name}'. Known settings: {known}.")


def port_in_use_note(name: str, stored: Any, listeners: list[dict[str, Any]] | None) -> str:
    """For a listener's port setting: what this run really uses when a command-line override
    (``--pop3-port`` and friends) differs from the stored value; empty otherwise."""
    spec = SPECS.get(name)
    if spec is None or spec.restart is None or spec.check is not _port or listeners is None:
        return ""
    try:
        stored_port = int(stored)
    except (TypeError, ValueError):
        return ""
    for item in listeners:
        if item.get("name") == spec.restart:
            try:
                used = int(item.get("port") or 0)
            except (TypeError, ValueError):
                return ""
            if used != stored_port:
                return (f"this run uses port {used} (set on the service's command line); the stored {stored_port} "
                        "applies when the service starts without it")
            return ""
    if stored_port:
        return "this run has no such listener (turned off on the service's command line)"
    return ""


def default_hostname() -> str:
    """The host name a new installation starts with: the machine's own (see core.hostname)."""
    return machine_name()


class Settings:
    """Read and write settings inside a database session."""

    @staticmethod
    def get_all(session: Session) -> dict[str, Any]:
        from sqlalchemy import select

        from core.tables import Setting

        values = {name: spec.default for name, spec in SPECS.items()}
        for row in session.scalars(select(Setting)):
            if row.name in values:
                values[row.name] = json.loads(row.value)
        return values

    @staticmethod
    def get(session: Session, name: str) -> Any:
        from core.tables import Setting

        spec = resolve(name)
        row = session.get(Setting, spec.name)
        return json.loads(row.value) if row is not None else spec.default

    @staticmethod
    def put(session: Session, name: str, value: Any) -> Any:
        """Store an already-checked value (no writability check: internal use)."""
        from core.tables import Setting

        spec = resolve(name)
        row = session.get(Setting, spec.name)
        encoded = json.dumps(value)
        if row is None:
            session.add(Setting(name=spec.name, value=encoded))
        else:
            row.value = encoded
        return value
