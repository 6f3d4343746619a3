"""Reading a file an administrator names, as that administrator could (issue 12 §2).

A member of the admin group is not root: when an admin operation names a path (an import
source, a certificate file), the service opens it only if the requester could read it themselves.
``Requester`` is who asks (the Unix peer's uid and groups, from SO_PEERCRED and /proc); the path
is walked one component at a time under directory descriptors (openat with O_NOFOLLOW), checking
the requester's search permission on every folder, so no symbolic link or race leads the service
anywhere the requester could not go. Permissions are the mode bits (POSIX ACLs are not read: a
file shared only through an ACL is refused, never the reverse).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from core.errors import Forbidden, Invalid, NotFound

READ, WRITE, SEARCH = 4, 2, 1
MAX_LINKS = 40     # as the kernel's path walk (ELOOP)


@dataclass(frozen=True)
class Requester:
    """Who asks the service to read a path: a local user (uid, groups), or ``uid=None`` for a
    remote administrator (admin token over TCP), who may read only what every user may."""

    uid: int | None
    gids: frozenset[int] = field(default_factory=frozenset)

    @property
    def shown(self) -> str:
        return "a remote administrator" if self.uid is None else f"uid {self.uid}"

    def may(self, st: os.stat_result, want: int) -> bool:
        """True if the mode bits of ``st`` grant ``want`` (READ, WRITE, SEARCH bits) to the requester."""
        if self.uid == 0:
            if want & SEARCH and not stat.S_ISDIR(st.st_mode):
                return bool(st.st_mode & 0o111)
            return True
        mode = st.st_mode
        if self.uid is not None and st.st_uid == self.uid:
            bits = (mode >> 6) & 7
        elif self.uid is not None and st.st_gid in self.gids:
            bits = (mode >> 3) & 7
        else:
            bits = mode & 7
        return bits & want == want


def _lstat_at(dir_fd: int, name: str) -> os.stat_result:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def open_as(path: str, who: Requester, *, directory: bool, follow: bool = True) -> int:
    """Open ``path`` (absolute) for reading as ``who`` could: every folder on the way searchable by
    them, the end a folder they may list (``directory``) or a regular file they may read. Symbolic
    links on the way are followed only with ``follow`` (each link's folder checked like any other).
    Returns a descriptor; Forbidden, NotFound or Invalid otherwise."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise Invalid("Give the path of a file or folder on the service's computer.")
    if not os.path.isabs(path):
        raise Invalid(f"'{path}' is not an absolute path.")
    todo = [p for p in path.split("/") if p not in ("", ".")]
    todo.reverse()
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    links = 0
    try:
        while todo:
            name = todo.pop()
            here = os.fstat(fd)
            if not who.may(here, SEARCH):
                raise Forbidden(f"{who.shown} may not enter a folder on the way to {path}; the service reads "
                                "for an administrator only what that administrator could read.")
            try:
                st = _lstat_at(fd, name)
            except FileNotFoundError:
                raise NotFound(f"{path} does not exist.") from None
            if stat.S_ISLNK(st.st_mode):
                if not follow:
                    raise Forbidden(f"{path} goes through a symbolic link ({name}); give the real path.")
                links += 1
                if links > MAX_LINKS:
                    raise Invalid(f"{path} has too many symbolic links.")
                target = os.readlink(name, dir_fd=fd)
                parts = [p for p in target.split("/") if p not in ("", ".")]
                todo.extend(reversed(parts))
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                continue
            last = not todo
            if not last or directory:
                if not stat.S_ISDIR(st.st_mode):
                    raise Invalid(f"{path} is not a folder." if last else f"A part of {path} is not a folder.")
                new = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            else:
                if not stat.S_ISREG(st.st_mode):
                    raise Invalid(f"{path} is not a regular file.")
                new = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = new
        end = os.fstat(fd)
        if directory:
            if not stat.S_ISDIR(end.st_mode):
                raise Invalid(f"{path} is not a folder.")
            if not who.may(end, READ | SEARCH):
                raise Forbidden(f"{who.shown} may not list {path}; the service reads for an administrator "
                                "only what that administrator could read.")
        else:
            if not stat.S_ISREG(end.st_mode):
                raise Invalid(f"{path} is not a regular file.")
            if not who.may(end, READ):
                raise Forbidden(f"{who.shown} may not read {path}; the service reads for an administrator "
                                "only what that administrator could read.")
        return fd
    except OSError as exc:
        os.close(fd)
        raise Forbidden(f"The service cannot open {path}: {exc.strerror}.") from None
    except BaseException:
        os.close(fd)
        raise


def read_file_as(path: str, who: Requester | None, *, limit: int = 1024 * 1024) -> bytes:
    """The bytes of the regular file ``path`` if ``who`` could read it (None: the service itself)."""
    fd = open_as(path, who or Requester(0), directory=False)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Invalid(f"{path} is larger than {limit // 1024} KiB; that is not a PEM file.")
    return data
