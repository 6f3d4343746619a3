"""The service's counters (``service.status`` → ``counters``) as the console names them: one table,
in the order the Service Status page shows them.

The names are those the service bumps (``counters.incr("…")`` in ``service/``); a test checks the
table against them and against what a real service reports.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CounterLabel:
    """How the status page shows one counter."""

    name: str            # as the service reports it: "pop3.logons", "smtp_accepted"
    label: str           # "POP3 logons"
    in_bytes: bool = False   # a byte count: shown as a size


COUNTERS: dict[str, CounterLabel] = {c.name: c for c in (
    CounterLabel("pop3.sessions", "POP3 sessions now"),
    CounterLabel("pop3.sessions_total", "POP3 sessions since start"),
    CounterLabel("pop3.logons", "POP3 logons"),
    CounterLabel("pop3.logon_failures", "Failed POP3 logons"),
    CounterLabel("pop3.logons_refused_locked", "POP3 logons refused: mailbox locked"),
    CounterLabel("pop3.logons_in_use", "POP3 logons refused: mailbox in use"),
    CounterLabel("pop3.logon_timeouts", "POP3 sessions closed: no logon in time"),
    CounterLabel("pop3.timeouts", "POP3 sessions closed: idle"),
    CounterLabel("pop3.bad_command_hangups", "POP3 sessions closed: too many bad commands"),
    CounterLabel("pop3.messages_retrieved", "Messages retrieved"),
    CounterLabel("pop3.bytes_retrieved", "Mail retrieved", in_bytes=True),
    CounterLabel("pop3.messages_deleted", "Messages deleted by mail clients"),
    CounterLabel("pop3.messages_lost", "Messages gone from the mail store"),
    CounterLabel("pop3.read_errors", "Messages that could not be read"),
    CounterLabel("smtp_accepted", "Messages received"),
    CounterLabel("smtp_delivered", "Deliveries to local mailboxes"),
    CounterLabel("smtp_refused", "SMTP commands refused"),
    CounterLabel("smtp_logons", "SMTP logons"),
    CounterLabel("smtp_logon_failures", "Failed SMTP logons"),
    CounterLabel("smtp_rate_limited", "Senders stopped by the sending limit"),
    CounterLabel("smtp_queued", "Messages queued for other servers"),
    CounterLabel("smtp_relayed", "Messages sent to other servers"),
    CounterLabel("smtp_bounced", "Recipients bounced"),
    CounterLabel("throttle.bans", "Addresses banned"),
    CounterLabel("admin_tcp.failures", "Failed remote administration logons"),
    CounterLabel("cluster.events_received", "Changes received from other nodes"),
)}
_ORDER = {name: i for i, name in enumerate(COUNTERS)}


def counter_label(name: str) -> str:
    """The label of counter ``name``; a newer service's unknown counter still reads as words."""
    known = COUNTERS.get(name)
    return known.label if known else name.replace("_", " ").replace(".", ": ", 1).capitalize()


def counter_order(name: str) -> int:
    """Where the counter goes on the page: the table's order, unknown ones last."""
    return _ORDER.get(name, len(_ORDER))


def counter_text(name: str, value: object) -> str:
    """The counter's value as shown: thousands separated, byte counts as a size."""
    if not isinstance(value, int):
        return str(value)
    known = COUNTERS.get(name)
    if known is not None and known.in_bytes:
        return size_text(value)
    return f"{value:,}"


def size_text(n: int) -> str:
    """1,536 → "1.5 KB": bytes in the unit that keeps the number short."""
    amount = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{int(amount):,} bytes" if unit == "bytes" else f"{amount:,.1f} {unit}"
        amount /= 1024
    return f"{amount:,.1f} GB"
