"""Errors with a stable code and a message a person can act on.

The admin channel turns them into ``{"error": {"code", "message"}}``; the console and ``winpop``
show the message as it is.
"""
from __future__ import annotations


class MailError(Exception):
    """Base of every refusal the core makes; ``code`` is part of the admin-channel contract."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class Invalid(MailError):
    """The input is malformed: a bad name, a value out of range."""

    code = "invalid"


class NotFound(MailError):
    """The named domain, mailbox or setting does not exist."""

    code = "not_found"


class Conflict(MailError):
    """The request clashes with the current state (duplicate, locked domain, domains present)."""

    code = "conflict"


class Forbidden(MailError):
    """The caller may not do this."""

    code = "forbidden"


class Unavailable(MailError):
    """A resource the operation needs is missing or not writable (mail root, key store, disk)."""

    code = "unavailable"


class Unreachable(Unavailable):
    """The service cannot be reached at all (not running, no route, connection lost): raised on the
    client side only, never sent over the channel; winpop exits 3 for it and 1 for other refusals."""


class DiskFull(Unavailable):
    """A disk the service writes to (the database's or the mail root's) has no room left. Same
    code as Unavailable (the admin-channel contract); SMTP answers it with 452 4.3.1."""


class AuthFailed(MailError):
    """Wrong credentials. Never says which half was wrong."""

    code = "auth_failed"


class QuotaExceeded(MailError):
    """Delivery would take the mailbox over its quota."""

    code = "quota"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


ERROR_TYPES: dict[str, type[MailError]] = {
    cls.code: cls
    for cls in (MailError, Invalid, NotFound, Conflict, Forbidden, Unavailable, AuthFailed, QuotaExceeded)
}


def from_dict(data: dict) -> MailError:
    """Rebuild an error received over the admin channel. It carries ``from_service = True``: the
    service answered and refused (winpop exits 1), unlike an unreachable service (exit 3)."""
    cls = ERROR_TYPES.get(str(data.get("code")), MailError)
    err = cls.__new__(cls)
    MailError.__init__(err, str(data.get("message", "unknown error")))
    err.code = str(data.get("code", "error"))
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
