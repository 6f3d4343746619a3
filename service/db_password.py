"""The database password kept off the command line: from a file readable only by its owner
(``--db-password-file``, mode 0600) or from the environment (``POP3SVC_DB_PASSWORD``), never
shown in a log. A password written into ``--db-url`` still works, with a warning: every user of
the machine can read a process's command line (``ps``, ``/proc/<pid>/cmdline``)."""
from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

from core.errors import Invalid

log = logging.getLogger(__name__)

PASSWORD_ENV = "POP3SVC_DB_PASSWORD"
URL_PASSWORD_WARNING = ("the database password is written in --db-url, where every user of this machine can "
                        "read it (ps, /proc/<pid>/cmdline); put it in a file with --db-password-file (mode "
                        f"0600) or in the environment variable {PASSWORD_ENV}")


def read_password_file(path: Path) -> str:
    """The password in ``path`` (its first line): the file must be a regular file that only its
    owner can read or write (mode 0600 or 0400), owned by this user or root; else Invalid."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise Invalid(f"The database password file {path} cannot be read: {exc.strerror}.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Invalid(f"The database password file {path} is not a regular file.")
        if info.st_mode & 0o077:
            raise Invalid(f"The database password file {path} has mode {stat.S_IMODE(info.st_mode):04o}: others "
                          f"may read it. Make it private: chmod 600 {path}")
        if info.st_uid not in (os.geteuid(), 0):
            raise Invalid(f"The database password file {path} belongs to another user; it must belong to "
                          "the service's user or root.")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(4097)
    finally:
        os.close(fd)
    if len(data) > 4096:
        raise Invalid(f"The database password file {path} is larger than 4 KB; it should hold the password only.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(f"The database password file {path} is not UTF-8 text.") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise Invalid(f"The database password file {path} is empty.")
    return password


def database_url(url: str, *, password_file: Path | None = None, environ: Mapping[str, str] | None = None) -> str:
    """``url`` with the password from ``password_file`` or $POP3SVC_DB_PASSWORD put in (the file
    wins); warns when ``url`` carries a password itself."""
    env = os.environ if environ is None else environ
    try:
        parsed = make_url(url)
    except Exception:
        raise Invalid("--db-url is not a database URL; write e.g. "
                      "postgresql+psycopg://pop3svc@db.example.com/pop3svc") from None
    if parsed.password:
        log.warning("%s", URL_PASSWORD_WARNING)
    if parsed.drivername.startswith("sqlite"):
        if password_file is not None:
            raise Invalid("--db-password-file was given, but the database is SQLite, which has no password.")
        return url
    password = read_password_file(password_file) if password_file is not None else env.get(PASSWORD_ENV) or None
    if password is None:
        return url
    return parsed.set(password=password).render_as_string(hide_password=False)


def shown_url(url: str) -> str:
    """A database URL as it may be logged: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(a database URL that cannot be parsed)"
