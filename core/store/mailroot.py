"""The mail root: the folders of domains and mailboxes under it, checked, created and removed."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from core.errors import Unavailable
from core.store.maildir import (
    TRASH_PREFIX,
    base_name,
    clean_name,
    disk_error,
    entry_kind,
    fsync_dir,
    maildir_chain,
    not_a_folder,
    shown_path,
)


class MailRoot:
    """One Maildir per mailbox at ``<path>/<domain>/<mailbox>``; the store never writes through a link."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def domain_dir(self, domain: str) -> Path:
        return self.path / domain

    def mailbox_dir(self, domain: str, name: str) -> Path:
        return self.path / domain / name

    def chain(self, folder: str | Path) -> list[str]:
        """The folders from below the root down to a Maildir's tmp/, new/ and cur/."""
        return maildir_chain(os.fspath(self.path), os.fspath(folder))

    def check_folders(self, domain: str, name: str | None = None) -> None:
        """Refuse a domain or mailbox folder (or its tmp/ new/ cur/) that is a symbolic link or not a
        folder: the store never writes through a link below the mail root."""
        folder = self.domain_dir(domain) if name is None else self.mailbox_dir(domain, name)
        chain = self.chain(folder)
        try:
            bad = not_a_folder(chain[:1] if name is None else chain)
        except OSError as exc:
            raise disk_error(exc) from None
        if bad is not None:
            raise Unavailable(f"{shown_path(bad[0])} is {bad[1]}, not a folder: the mail store does not "
                              "write through it. Replace it with a real folder.")

    def check(self, *, create: bool = True) -> None:
        """Make sure the mail root exists and is writable, or say clearly what is wrong.

        With ``create=False`` (domains exist) a missing root is an error, not something to make
        anew: an unmounted disk must not be replaced by an empty folder that mail then goes to."""
        if not self.path.exists() and not create:
            raise Unavailable(f"The root mail directory {self.path} is missing. Is its disk mounted? "
                              "Restore it, or choose another root mail directory.",
                              hint="winpop set mailroot chooses another.")
        if self.path.exists() and not self.path.is_dir():
            raise Unavailable(f"The root mail directory {self.path} is not a folder.")
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise Unavailable(f"The root mail directory {self.path} cannot be created: {exc.strerror}.") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise Unavailable(f"The root mail directory {self.path} is not writable by the service.")

    def create_domain_folder(self, domain: str, *, create_root: bool) -> Path:
        """Create (or adopt) a domain's folder; the root itself only with ``create_root``."""
        self.check(create=create_root)
        path = self.domain_dir(domain)
        self.check_folders(domain)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            fsync_dir(self.path)
        except OSError as exc:
            raise disk_error(exc) from None
        return path

    def create_mailbox_folder(self, domain: str, name: str, *, create_root: bool) -> Path:
        """Create (or adopt) the Maildir of a mailbox: tmp/, new/ and cur/."""
        self.create_domain_folder(domain, create_root=create_root)
        path = self.mailbox_dir(domain, name)
        self.check_folders(domain, name)
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            for sub in ("tmp", "new", "cur"):
                (path / sub).mkdir(mode=0o700, exist_ok=True)
            self.check_folders(domain, name)   # made by someone else between the check and the mkdir
            fsync_dir(path)
            fsync_dir(path.parent)
        except OSError as exc:
            raise disk_error(exc) from None
        return path

    @staticmethod
    @contextlib.contextmanager
    def removing(path: Path) -> Iterator[None]:
        """Remove a folder around a database change: rename aside, run the body (which commits),
        then delete; if the body fails the folder is put back."""
        trash = path.with_name(f"{TRASH_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}")
        moved = False
        if path.exists():
            try:
                os.rename(path, trash)
                fsync_dir(path.parent)
            except OSError as exc:
                raise disk_error(exc) from None
            moved = True
        try:
            yield
        except BaseException:
            if moved:
                os.rename(trash, path)
                fsync_dir(path.parent)
            raise
        if moved:
            shutil.rmtree(trash, ignore_errors=True)

    def maildir_problem(self, folder: Path) -> str | None:
        """Why the folders of a Maildir cannot be trusted to hold its files, or None."""
        for path in self.chain(folder):
            try:
                mode = os.lstat(path).st_mode
            except OSError as exc:
                return f"{shown_path(path)}: {exc.strerror}"
            if not stat.S_ISDIR(mode):
                return f"{shown_path(path)} is {entry_kind(mode)}, not a folder"
        return None

    @staticmethod
    def unlink_files(folder: Path, filenames: Iterable[str]) -> dict[str, str]:
        """Unlink message files (a missing one is fine); returns {filename: reason} of those that stay."""
        dirs = set()
        failed: dict[str, str] = {}
        for filename in filenames:
            path = folder / filename
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:   # immutable, a folder in its place, a read-only disk
                failed[filename] = exc.strerror or str(exc)
            dirs.add(path.parent)
        for directory in dirs:
            with contextlib.suppress(OSError):
                fsync_dir(directory)
        return failed

    @staticmethod
    def find_renamed(folder: Path, filename: str) -> str | None:
        """new/NAME or cur/NAME[:2,FLAGS] under another of those names (a reader moved or flagged it)."""
        base = base_name(filename)
        found = []
        for sub in ("new", "cur"):
            with contextlib.suppress(OSError), os.scandir(folder / sub) as entries:
                for entry in entries:
                    if base_name(f"{sub}/{entry.name}") == base and entry.is_file(follow_symlinks=False):
                        found.append(f"{sub}/{entry.name}")
        found = [rel for rel in found if rel != filename and clean_name(rel.split("/", 1)[1])]
        return found[0] if len(found) == 1 else None
