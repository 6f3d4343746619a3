"""What a POP3 session and its commands both speak of: the RFC 1939 states, the session-closed
signal, the over-long-line marker, the logging levels, and the session's rate-limited log."""
from __future__ import annotations

import enum
import logging

from service.lograte import EventLog

log = logging.getLogger("service.pop3")
events = EventLog(log)

TOO_LONG = object()            # marker queued instead of an over-long line

# Logging levels of the "logging" setting (winpop set logging): what each one adds.
LOG_MINIMUM, LOG_MEDIUM, LOG_MAXIMUM = 1, 2, 3


class State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    UPDATE = "update"


class SessionClosed(Exception):
    """The connection went away while a command was writing."""
