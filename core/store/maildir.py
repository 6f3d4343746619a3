"""Maildir files: unique names, durable writes, safe reads, POP3 sizes and UIDLs (DESIGN §5).

The one place a message file is written: create in ``tmp/`` exclusively, write, fsync; the
caller renames it into ``new/`` and fsyncs the folder.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import itertools
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from core.errors import DiskFull, Unavailable

TMP_MAX_AGE = 36 * 3600  # Maildir convention: tmp files older than 36 hours are abandoned
TRASH_PREFIX = ".deleted."
BIG_MESSAGE = 1 << 20    # octets: a bigger message is converted and written a MB at a time
UIDL_OK = re.compile(r"^[\x21-\x7e]{1,70}$")
_CLEAN_NAME_MAX = 200    # longer names are renamed: the index column holds 255 characters
_SIZE_IN_NAME = re.compile(r",W=(\d+)")


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as text for logs and the admin channel: bytes that are not UTF-8 as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def clean_name(name: str) -> bool:
    """Whether a file name can go into the index as it is: valid UTF-8, printable, not too long."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:   # undecodable bytes, kept by os.fsdecode as surrogate escapes
        return False
    return name.isprintable() and 0 < len(encoded) <= _CLEAN_NAME_MAX


def open_message(path: str | os.PathLike[str]) -> io.FileIO:
    """Open a message file for reading, unbuffered: never through a symbolic link (O_NOFOLLOW),
    never a FIFO or a device (O_NONBLOCK, then fstat). Raises OSError like open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                          "not a regular file", os.fspath(path))
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def entry_kind(mode: int) -> str:
    """What a non-message directory entry is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or special file"


def pop3_size(data: bytes) -> int:
    """Octets of ``data`` as POP3 sends it: every line ended by CRLF (RFC 1939 §11)."""
    if not data:
        return 0
    lines = data.count(b"\n")
    crlf = data.count(b"\r\n")
    size = len(data) + (lines - crlf)
    if not data.endswith(b"\n"):
        size += 2
    return size


def file_pop3_size(fh: BinaryIO) -> int:
    """pop3_size of a file, read in pieces (memory does not grow with the message)."""
    total = lines = crlf = 0
    prev = b""
    last = b""
    while True:
        chunk = fh.read(1 << 16)
        if not chunk:
            break
        total += len(chunk)
        lines += chunk.count(b"\n")
        crlf += chunk.count(b"\r\n") + (1 if prev == b"\r" and chunk[:1] == b"\n" else 0)
        prev = last = chunk[-1:]
    if not total:
        return 0
    return total + (lines - crlf) + (0 if last == b"\n" else 2)


def to_maildir(data: bytes) -> bytes:
    """Maildir files use LF line ends; SMTP brings CRLF."""
    return data.replace(b"\r\n", b"\n")


def uidl_for(filename: str) -> str:
    """The UIDL of a message file: its unique base name, or a digest where that is too long."""
    base = filename.split(",", 1)[0].split(":", 1)[0]
    if UIDL_OK.match(base):
        return base
    return hashlib.sha1(base.encode("utf-8", "surrogateescape")).hexdigest()


def base_name(rel: str) -> str:
    """A Maildir file's unique part: ``new/NAME`` or ``cur/NAME:2,FLAGS`` → ``NAME``."""
    return rel.split("/", 1)[-1].split(":", 1)[0]


def size_from_name(filename: str) -> int | None:
    """The POP3 size a Maildir name carries (``,W=n``), or None."""
    match = _SIZE_IN_NAME.search(filename)
    return int(match.group(1)) if match else None


class MessageNames:
    """Fresh Maildir file names for this host: time, process, a counter, host and sizes."""

    _seq = itertools.count(1)        # one counter per process: names stay unique across stores
    _seq_lock = threading.Lock()

    def __init__(self, hostname: str | None = None) -> None:
        # '/' and ':' cannot be in a Maildir name (the Maildir convention escapes them).
        self.hostname = (hostname or socket.gethostname() or "localhost").replace("/", "\\057").replace(":", "\\072")

    def new(self, size: int, vsize: int) -> str:
        """A unique name for a message of ``size`` octets on disk, ``vsize`` as POP3 sends it."""
        with self._seq_lock:
            seq = next(self._seq)
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        return f"{sec}.M{usec}P{os.getpid()}Q{seq}.{self.hostname},S={size},W={vsize}"


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (a rename or unlink in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: str | Path, data: bytes) -> None:
    """Create ``path`` exclusively, write ``data``, fsync. On any failure the file is gone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def write_maildir_durably(path: str | Path, data: bytes) -> tuple[int, int]:
    """Like write_durably(path, to_maildir(data)) without holding the converted copy: a MB at a
    time (so memory stays at one message, and no C call holds the GIL for long). Returns the
    file's size and its POP3 size (pop3_size of what was written)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = lines = crlf = 0
    last = b""
    try:
        start, total = 0, len(data)
        while start < total:
            stop = min(start + BIG_MESSAGE, total)
            while stop < total and data[stop - 1] == 0x0D:   # never cut a CRLF (or CR CRLF) in two
                stop += 1
            piece = data[start:stop].replace(b"\r\n", b"\n")
            size += len(piece)
            lines += piece.count(b"\n")
            crlf += piece.count(b"\r\n")
            last = piece[-1:]
            view = memoryview(piece)
            while view:
                view = view[os.write(fd, view):]
            start = stop
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)
    vsize = size + (lines - crlf) + (2 if size and last != b"\n" else 0)   # as pop3_size
    return size, vsize


def not_a_folder(paths: Iterable[str]) -> tuple[str, str] | None:
    """The first of ``paths`` that exists but is a symbolic link or not a folder (lstat: no
    following), as (path, what it is); None if all are folders or absent."""
    for path in paths:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(mode):
            return path, entry_kind(mode)
    return None


def maildir_chain(root: str, folder: str) -> list[str]:
    """Every folder from below the mail root down to a Maildir's tmp/ and new/ and cur/."""
    chain, path = [], root
    for part in folder[len(root):].strip("/").split("/"):
        path = f"{path}/{part}"
        chain.append(path)
    return chain + [f"{folder}/tmp", f"{folder}/new", f"{folder}/cur"]


def disk_error(exc: OSError) -> Unavailable:
    """A failed write to the mail root as an error a person can act on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull("The mail store is out of disk space; free space on the mail root's disk.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return Unavailable(f"The mail store cannot write to {exc.filename}: {exc.strerror}. "
                           "Check that the root mail directory is writable by the service.")
    return Unavailable(f"The mail store could not write: {exc.strerror or exc}.")
