"""Running as an unprivileged user: bind the ports as root, then become ``--user`` for good.

``python main.py service --user pop3svc`` started as root (by hand, or by an init system without
AmbientCapabilities) binds its listeners and opens the admin socket first, hands the files it
must write (data directory, mail root) to that user, then drops root: supplementary groups, group,
user, in that order, and checks that root cannot be regained.
"""
from __future__ import annotations

import grp
import importlib
import logging
import os
import pkgutil
import pwd
from dataclasses import dataclass
from pathlib import Path

from core.errors import Invalid

log = logging.getLogger(__name__)

# Standard modules the service imports on first use, after root is gone: the parser and policy
# of SMTP and the store, and the IDNA codec of host names.
_LAZY_STDLIB = ("email.parser", "email.policy", "encodings.idna")


@dataclass(frozen=True)
class RunAs:
    """The account the service becomes after binding its ports."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise Invalid(f"There is no user '{name}' on this computer; create it (useradd --system {name}) "
                          "or run 'python main.py service install'.") from None
        if entry.pw_uid == 0:
            raise Invalid(f"'{name}' is root; --user must name an unprivileged account.")
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def hand_over(paths: list[Path], who: RunAs, *, only_from: int | None = None) -> int:
    """Give ``paths`` (recursively) to ``who``; only entries owned by someone else are touched, so a
    second start walks but writes nothing. With ``only_from``, only entries owned by that uid change
    (a mail root outside the data directory: what root made there, never another user's files).
    Returns how many entries changed owner."""
    changed = 0
    seen: set[Path] = set()
    for top in paths:
        top = Path(top)
        if not top.exists() or top in seen:
            continue
        seen.add(top)
        entries = [top]
        for dirpath, dirnames, filenames in os.walk(top):
            entries.extend(Path(dirpath) / n for n in dirnames + filenames)
        for entry in entries:
            try:
                st = entry.lstat()
                if st.st_uid != who.uid and (only_from is None or st.st_uid == only_from):
                    os.lchown(entry, who.uid, -1 if st.st_gid not in (0,) else who.gid)
                    changed += 1
            except OSError as exc:
                log.error("cannot give %s to %s: %s", entry, who.name, exc.strerror)
    return changed


def preload(packages: tuple[str, ...] = ("core", "service")) -> None:
    """Import the service's modules while root can still read them: the interpreter may live where
    the service's user cannot read (a Python under /root), and imports happen lazily."""
    for name in _LAZY_STDLIB:
        importlib.import_module(name)
    for package in packages:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if ".migrations" in info.name:
                continue
            try:
                importlib.import_module(info.name)
            except Exception as exc:  # noqa: BLE001 - an optional part (PAM, LDAP) may be missing
                log.debug("preload %s: %s", info.name, exc)


def drop_to(who: RunAs) -> None:
    """Become ``who`` for the rest of the process (all threads: glibc applies set*id to each)."""
    os.setgroups(os.getgrouplist(who.name, who.gid))
    os.setgid(who.gid)
    os.setuid(who.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - only if the kernel let us back in
        raise RuntimeError("root could be regained after dropping privileges; refusing to run")
    log.warning("dropped root: now running as %s (uid %d, gid %d, groups %s)", who.name, os.getuid(),
                os.getgid(), ",".join(grp.getgrgid(g).gr_name if _has_group(g) else str(g) for g in os.getgroups()))


def _has_group(gid: int) -> bool:
    try:
        grp.getgrgid(gid)
        return True
    except KeyError:
        return False
