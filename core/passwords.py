"""The one password rule: what a new mailbox password must be, worded once for every place that sets one.

The setup wizard's first mailbox, New Mailbox, Change Password and ``winpop`` (add /createuser,
changepwd) all ask ``password_problem``; the service enforces ``check_password`` in core.admin before
any account method sees the password. It is the common floor: a method with its own rules (PAM's
password quality, a directory's policy) may still refuse a password that passes it, and that
refusal is shown as it comes.

It applies to new passwords only; a password set before it keeps working at logon.

- at least ``MIN_LENGTH`` characters: the minimum of NIST SP 800-63B §5.1.1.2 for a secret a person
  chooses, and what the setup wizard already asked for (the strictest rule before this one);
- at most ``MAX_LENGTH`` characters (the SCRAM verifier and the encrypted secret stay small);
- no NUL and no line break: mail clients cannot send them in USER/PASS or AUTH, and PAM's chpasswd
  reads one account per line;
- text that can be encoded as UTF-8 (no lone surrogate halves from a broken terminal).
"""
from __future__ import annotations

from core.errors import PasswordRefused

MIN_LENGTH = 8
MAX_LENGTH = 256
FORBIDDEN_CHARACTERS = "\x00\r\n"

RULE = (f"A password is {MIN_LENGTH} to {MAX_LENGTH} characters long and contains no line break; "
        "any letters, digits, spaces and symbols will do.")
EMPTY = f"Type a password of at least {MIN_LENGTH} characters."
CONFIRM_MISSING = "Type the password again to confirm it."
CONFIRM_DIFFERS = "The two passwords differ; type the same password twice."


def form_problem(password: object) -> str | None:
    """What no account method can take (empty, a NUL or line break, too long, not UTF-8); None if
    ``password`` can be stored. The account methods check this much themselves before they store a
    password; the length floor is the administrators' rule (``password_problem``)."""
    if not isinstance(password, str) or password == "":
        return EMPTY
    if any(ch in password for ch in FORBIDDEN_CHARACTERS):
        return "The password may not contain a line break or a NUL character; mail clients cannot send those."
    if len(password) > MAX_LENGTH:
        return f"The password is {len(password)} characters long; the limit is {MAX_LENGTH}."
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "The password contains an invalid character (a lone surrogate); type it again."
    return None


def password_problem(password: object) -> str | None:
    """Why ``password`` may not be set as a new password, in words for the person who typed it; None
    if it may."""
    problem = form_problem(password)
    if problem is None and isinstance(password, str) and len(password) < MIN_LENGTH:
        problem = f"The password is {len(password)} characters long; use at least {MIN_LENGTH}."
    return problem


def check_password(password: object) -> str:
    """``password`` if it may be set, else PasswordRefused with the reason ``password_problem`` gives."""
    return _checked(password, password_problem(password))


def check_form(password: object) -> str:
    """``password`` if an account method can store it, else PasswordRefused (``form_problem``)."""
    return _checked(password, form_problem(password))


def _checked(password: object, problem: str | None) -> str:
    if problem is not None:
        raise PasswordRefused(problem)
    assert isinstance(password, str)
    return password


def confirmation_problem(password: str, confirm: str) -> str | None:
    """Why the confirmation does not confirm ``password`` (not typed yet, or different); None if it does."""
    if confirm == password:
        return None
    return CONFIRM_DIFFERS if confirm else CONFIRM_MISSING
