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
    """Rebuild an error received over the admin channel."""
    cls = ERROR_TYPES.get(str(data.get("code")), MailError)
    err = cls.__new__(cls)
    MailError.__init__(err, str(data.get("message", "unknown error")))
    err.code = str(data.get("code", "error"))
    if isinstance(err, QuotaExceeded):
        err.permanent = False
    return err
