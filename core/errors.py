"""Errors with a stable code and a message a person can act on.

The admin channel turns them into ``{"error": {"code", "message"}}``, plus two optional members:
``kind``, a finer stable name under the code (``conflict``/``exists``: it is there already), so the
console can give each error a heading that fits; and ``hint``, a command that would help
(``winpop add example.com``), which ``winpop`` prints after the message and the console leaves out:
a console user is never told to run a command.
"""
from __future__ import annotations


class MailError(Exception):
    """Base of every refusal the core makes; ``code`` is part of the admin-channel contract."""

    code = "error"
    kind = ""   # a finer, stable name under ``code`` (see the subclasses below); "" when there is none

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        """The error as the admin channel sends it (``kind`` and ``hint`` only when set)."""
        data = {"code": self.code, "message": self.message}
        if self.kind:
            data["kind"] = self.kind
        if self.hint:
            data["hint"] = self.hint
        return data

    def for_command_line(self) -> str:
        """The message followed by the command advice, as winpop prints it."""
        return f"{self.message} {self.hint}" if self.hint else self.message


class Invalid(MailError):
    """The input is malformed: a bad name, a value out of range."""

    code = "invalid"


class PasswordRefused(Invalid):
    """A new password breaks the password rule (core.passwords) or the account system's own."""

    kind = "password"


class NotFound(MailError):
    """The named domain, mailbox or setting does not exist."""

    code = "not_found"


class AccountMissing(NotFound):
    """The user account a mailbox needs (a system account, a directory entry) does not exist."""

    kind = "account"


class Conflict(MailError):
    """The request clashes with the current state (duplicate, locked domain, domains present)."""

    code = "conflict"


class AlreadyExists(Conflict):
    """A domain, mailbox, account or token of that name is there already."""

    kind = "exists"


class Locked(Conflict):
    """The thing (or the domain around it) is locked, and the request needs it unlocked."""

    kind = "locked"


class Forbidden(MailError):
    """The caller may not do this."""

    code = "forbidden"


class Unavailable(MailError):
    """A resource the operation needs is missing or not writable (mail root, key store, disk)."""

    code = "unavailable"


class Unreachable(Unavailable):
    """The service cannot be reached at all (not running, no route, connection lost): raised on the
    client side only, never sent over the channel; winpop exits 3 for it and 1 for other refusals."""

    kind = "unreachable"


class DiskFull(Unavailable):
    """A disk the service writes to (the database's or the mail root's) has no room left. Same
    code as Unavailable (the admin-channel contract); SMTP answers it with 452 4.3.1."""

    kind = "disk_full"


class AuthFailed(MailError):
    """Wrong credentials. Never says which half was wrong."""

    code = "auth_failed"


class QuotaExceeded(MailError):
    """Delivery would take the mailbox over its quota."""

    code = "quota"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


INTERNAL = "internal"   # the code of a service bug ("The service failed to do ..."); no class: never raised

ERROR_TYPES: dict[str, type[MailError]] = {
    cls.code: cls
    for cls in (MailError, Invalid, NotFound, Conflict, Forbidden, Unavailable, AuthFailed, QuotaExceeded)
}
# The finer kinds under a code, by (code, kind).
ERROR_KINDS: dict[tuple[str, str], type[MailError]] = {
    (cls.code, cls.kind): cls for cls in (PasswordRefused, AccountMissing, AlreadyExists, Locked, DiskFull)
}
# Every code the admin channel may answer with: the console has a heading for each.
ERROR_CODES: tuple[str, ...] = (*ERROR_TYPES, INTERNAL)


def from_dict(data: dict) -> MailError:
    """Rebuild an error received over the admin channel. It carries ``from_service = True``: the
    service answered and refused (winpop exits 1), unlike an unreachable service (exit 3)."""
    code, kind = str(data.get("code", "error")), str(data.get("kind") or "")
    cls = ERROR_KINDS.get((code, kind)) or ERROR_TYPES.get(code, MailError)
    err = cls.__new__(cls)
    MailError.__init__(err, str(data.get("message", "unknown error")), hint=str(data.get("hint") or ""))
    err.code = code
    if kind != err.kind:   # a kind this side does not know yet: kept, so nothing is lost on the way
        err.kind = kind
    err.from_service = True  # type: ignore[attr-defined]
    if isinstance(err, QuotaExceeded):
        err.permanent = False
    return err


# --- database failures, worded for a person (issue 14) ----------------------------------------
DATABASE_FULL = ("The database's disk is full, so nothing can be changed right now. Free space on that disk; "
                 "users can still log on and read their mail meanwhile.")
DATABASE_BUSY = ("The database is busy: another program has held its write lock for too long. Try again in a "
                 "moment; if this persists, close the program that keeps the database open (a sqlite3 shell, a "
                 "backup tool).")
_SQLITE_FULL, _SQLITE_BUSY, _SQLITE_LOCKED = 13, 5, 6
_PG_DISK_FULL = {"53100"}                                  # disk_full
_PG_BUSY = {"55P03", "57014", "40P01"}                      # lock_not_available, query_canceled, deadlock


def database_error(exc: BaseException) -> MailError | None:
    """A database driver's failure (raw or wrapped by SQLAlchemy) as a refusal a person can act
    on: a full disk (DiskFull) or a lock held too long (Unavailable); None for anything else.
    Duck-typed on the driver's error codes, so core needs no driver imports."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, OSError) and not hasattr(exc, "sqlite_errorcode"):   # a file, not the database
        return None
    orig = getattr(exc, "orig", None) or exc
    code = getattr(orig, "sqlite_errorcode", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig).lower()
    if (code is not None and code & 0xFF == _SQLITE_FULL) or state in _PG_DISK_FULL \
            or "database or disk is full" in text or "no space left on device" in text:
        return DiskFull(DATABASE_FULL)
    if (code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)) or state in _PG_BUSY \
            or "database is locked" in text:
        return Unavailable(DATABASE_BUSY)
    return None
