"""Server properties the POP3 server adds to the registry (DESIGN §4)."""
from __future__ import annotations

from core.settings import SettingSpec, register, whole_number

BAD_COMMANDS = register(SettingSpec(
    "pop3_bad_commands", 20, whole_number(1, 1000, "commands"), "POP3 bad command limit",
    help="unknown or malformed commands after which a session is ended (Dovecot: 20)"))
LOCK_LEASE = register(SettingSpec(
    "pop3_lock_lease", 120, whole_number(15, 3600, "seconds"), "POP3 mailbox lock lease (s)",
    help="how long a mailbox lock outlives a crashed service node; renewed while the session lives"))
LOGON_TIMEOUT = register(SettingSpec(
    "pop3_logon_timeout", 60, whole_number(1, 3600, "seconds"), "POP3 logon time limit (s)",
    help="a client that has not logged on this long after connecting is disconnected, however slowly "
         "it sends (slow-client attacks)"))
