"""Server properties the POP3 server adds to the registry (DESIGN §4)."""
from __future__ import annotations

from typing import Any

from core.errors import Invalid
from core.settings import SettingSpec, register


def _whole(lo: int, hi: int, unit: str) -> Any:
    def check(value: Any) -> int:
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            raise Invalid(f"'{value}' is not a whole number of {unit}; give {lo} to {hi}.") from None
        if not lo <= number <= hi:
            raise Invalid(f"{number} is out of range; give {lo} to {hi} {unit}.")
        return number
    return check


BAD_COMMANDS = register(SettingSpec(
    "pop3_bad_commands", 20, _whole(1, 1000, "commands"), "POP3 bad command limit",
    help="unknown or malformed commands after which a session is ended (Dovecot: 20)"))
LOCK_LEASE = register(SettingSpec(
    "pop3_lock_lease", 120, _whole(15, 3600, "seconds"), "POP3 mailbox lock lease (s)",
    help="how long a mailbox lock outlives a crashed service node; renewed while the session lives"))
