"""The administration operations behind the admin channel: domains, mailboxes, settings, stat,
audit and import. One transaction per operation; a refusal changes nothing.

The service's IPC server calls these (in a worker thread) and audits every mutating call;
``publish`` carries change events to every open console. Answers and events are frozen values
(core.model); the admin channel alone turns them into JSON (core.ipc.wire).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import catalog, passwords
from core.access import READ, SEARCH, Requester, open_as
from core.auth.provider import AccountAdmin
from core.db import Database
from core.errors import (
    AlreadyExists,
    Conflict,
    Invalid,
    Locked,
    MailError,
    NotFound,
    PasswordRefused,
    Unavailable,
    database_error,
)
from core.model import (
    AuditPage,
    AuditRecord,
    DomainDeleted,
    DomainInfo,
    DomainPage,
    DomainStat,
    ImportSummary,
    MailboxAddress,
    MailboxDeleted,
    MailboxInfo,
    MailboxPage,
    MailrootMove,
    ServerStat,
    SettingChange,
    SettingChanged,
    SettingsSnapshot,
)
from core.names import display_domain, normalize_domain, normalize_mailbox, split_address
from core.sealer import Sealer, is_sealed
from core.settings import Settings
from core.store import MailStore
from core.store.maildir import clean_name, shown_path, uidl_for
from core.tables import AuditEntry, Domain, Mailbox, Message

log = logging.getLogger(__name__)

# A change event: its name ("mailbox.added") and the value it carries (core.model).
Publish = Callable[[str, object], None]


def check_mailroot_path(value: str) -> Path:
    """A root mail directory the service may use (issue 12 §2): an absolute path to a real folder
    (not a symbolic link) that the service's user or root owns and nobody else can write; a
    missing one is created (0700). Ownership of what exists is never changed."""
    if not value:
        raise Invalid("The root mail directory cannot be empty.")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise Invalid(f"The root mail directory must be an absolute path, not '{value}'.")
    path = Path(os.path.normpath(path))
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        try:
            path.mkdir(parents=True, mode=0o700)
            info = os.lstat(path)
        except OSError as exc:
            raise Unavailable(f"Cannot create {path}: {exc.strerror}.") from None
    except OSError as exc:
        raise Unavailable(f"Cannot use {path}: {exc.strerror}.") from None
    if stat.S_ISLNK(info.st_mode):
        raise Invalid(f"{path} is a symbolic link; give the folder itself ({os.path.realpath(path)}), "
                      "so that nobody can redirect the mail by changing the link.")
    if not stat.S_ISDIR(info.st_mode):
        raise Invalid(f"{path} is not a folder.")
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise Invalid(f"{path} belongs to {_user_name(info.st_uid)}; the root mail directory must belong to "
                        f"the service's user ({_user_name(me)}) or to root.")
    if info.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("its group", 0o020), ("every user", 0o002)) if info.st_mode & bit)
        raise Invalid(f"{path} can be written by {who} (mode {stat.S_IMODE(info.st_mode):04o}); mail must be "
                      "writable by the service alone.", hint=f"Run: chmod go-w {path}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise Unavailable(f"{path} is not writable by the service.")
    return path


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"user {uid}"


def import_base(name: str) -> str:
    """The Maildir base name (and UIDL) of an imported .eml file: its own name, or, where that is
    not UTF-8 text, a stable digest of its bytes (so a second run skips it too)."""
    if clean_name(name):
        return name
    return f"{hashlib.sha1(os.fsencode(name)).hexdigest()}.eml"


def domain_info(row: Domain) -> DomainInfo:
    """The plain value of a domain row (read inside its session)."""
    return DomainInfo(name=row.name, display_name=display_domain(row.name), locked=row.locked,
                      mailbox_count=row.mailbox_count, message_count=row.message_count,
                      total_bytes=row.total_bytes)


def mailbox_info(row: Mailbox, domain: Domain) -> MailboxInfo:
    """The plain value of a mailbox row and its domain's (read inside their session)."""
    return MailboxInfo(name=row.name, domain=domain.name, address=f"{row.name}@{domain.name}",
                       locked=row.locked, domain_locked=domain.locked, message_count=row.message_count,
                       total_bytes=row.total_bytes, quota_bytes=row.quota_bytes, has_user=row.has_user)


_SORT_COLUMNS = {"name": "name", "count": "mailbox_count", "mailboxes": "mailbox_count",
                 "messages": "message_count", "size": "total_bytes", "state": "locked", "quota": "quota_bytes"}


def _order(table: Any, sort: str, descending: bool) -> list:
    """ORDER BY for a list op: the chosen column, then the name (a stable order for paging)."""
    attr = _SORT_COLUMNS.get(sort)
    if attr is None or not hasattr(table, attr):
        raise Invalid(f"Cannot sort by '{sort}'; use one of: "
                      f"{', '.join(k for k, v in _SORT_COLUMNS.items() if hasattr(table, v))}.")
    column = getattr(table, attr)
    first = column.desc() if descending else column.asc()
    if attr == "name":
        return [first]
    return [first, table.name.desc() if descending else table.name.asc()]


def _shown_settings(session: Session) -> dict[str, object]:
    """Every setting as people may see it (a secret shows as "(set)")."""
    return {k: catalog.shown(k, v) for k, v in Settings.get_all(session).items()}


class Admin:
    """Every administrative operation, over the database, the mail store and the auth provider."""

    def __init__(self, db: Database, store: MailStore, *, auth: AccountAdmin, publish: Publish | None = None,
                 available_methods: tuple[str, ...] = ("passwordfile",), sealer: Sealer | None = None) -> None:
        self.db = db
        self.sealer = sealer     # seals secret settings (None: the service's server key is not at hand)
        self.store = store
        self.auth: AccountAdmin = auth   # replaced when the auth setting changes (service.auth_methods)
        self.publish: Publish = publish or (lambda name, data: None)
        self.available_methods = available_methods

    # -- helpers --------------------------------------------------------------------------
    def _method(self, session: Session) -> str:
        return Settings.get(session, "auth")

    @staticmethod
    def _domain(session: Session, name: str, *, lock: bool = False) -> Domain:
        canonical = normalize_domain(name)
        query = select(Domain).where(Domain.name == canonical)
        if lock:
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise NotFound(f"The domain {canonical} does not exist.",
                           hint=f"Create it first with: winpop add {canonical}")
        return row

    def _mailbox(self, session: Session, address: str, *, lock: bool = False) -> tuple[Mailbox, Domain]:
        name, domain_name = split_address(address, self._method(session))
        domain = self._domain(session, domain_name)
        query = select(Mailbox).where(Mailbox.domain_id == domain.id, Mailbox.name == name)
        if lock:
            query = query.with_for_update()
        box = session.scalars(query).first()
        if box is None:
            raise NotFound(f"The mailbox {name}@{domain.name} does not exist.")
        return box, domain

    # -- domains --------------------------------------------------------------------------
    def domain_list(self, offset: int = 0, limit: int = 0, filter: str = "", sort: str = "name",
                    descending: bool = False) -> DomainPage:
        """A page of the domains (all of them with ``limit`` 0), sorted and filtered."""
        with self.db.read() as session:
            query = select(Domain)
            count = select(func.count(Domain.id))
            if filter:
                cond = Domain.name.contains(filter.strip().lower(), autoescape=True)
                query, count = query.where(cond), count.where(cond)
            total = int(session.scalar(count) or 0)
            query = query.order_by(*_order(Domain, sort, descending)).offset(max(0, offset))
            if limit > 0:
                query = query.limit(limit)
            items = tuple(domain_info(d) for d in session.scalars(query))
        return DomainPage(total=total, offset=offset, items=items)

    def domain_get(self, name: str) -> DomainInfo:
        with self.db.read() as session:
            return domain_info(self._domain(session, name))

    def domain_add(self, name: str) -> DomainInfo:
        """Create a domain and its folder in one transaction (the folder goes again if it fails)."""
        canonical = normalize_domain(name)
        made_folder = False   # removed again on failure; never a folder another request made meanwhile
        try:
            with self.db.write() as session:
                if session.scalars(select(Domain.id).where(Domain.name == canonical)).first() is not None:
                    raise AlreadyExists(f"The domain {canonical} already exists.")
                domains_exist = session.scalars(select(Domain.id).limit(1)).first() is not None
                existed = self.store.domain_dir(canonical).exists()
                self.store.create_domain_folder(canonical, domains_exist=domains_exist)
                made_folder = not existed
                row = Domain(name=canonical, locked=False, mailbox_count=0, message_count=0, total_bytes=0)
                session.add(row)
                try:
                    session.flush()
                except IntegrityError:   # added at the same moment by another node: its folder now
                    made_folder = False
                    raise AlreadyExists(f"The domain {canonical} already exists.") from None
                info = domain_info(row)
        except BaseException:
            if made_folder:
                with contextlib.suppress(OSError):
                    self.store.domain_dir(canonical).rmdir()
            raise
        self.publish("domain.added", info)
        return info

    def domain_delete(self, name: str, delete_users: bool = False) -> DomainDeleted:
        canonical = normalize_domain(name)
        with self.db.read() as session:
            self._domain(session, canonical)
        with self.store.removing(self.store.domain_dir(canonical)):
            with self.db.write() as session:
                row = self._domain(session, canonical, lock=True)
                if delete_users:
                    self.auth.delete_users(session, row.id)
                session.delete(row)
        self.store.forget()
        deleted = DomainDeleted(name=canonical)
        self.publish("domain.deleted", deleted)
        return deleted

    def _set_domain_lock(self, name: str, locked: bool) -> DomainInfo:
        with self.db.write() as session:
            row = self._domain(session, name, lock=True)
            row.locked = locked
            info = domain_info(row)
        self.publish("domain.changed", info)
        return info

    def domain_lock(self, name: str) -> DomainInfo:
        return self._set_domain_lock(name, True)

    def domain_unlock(self, name: str) -> DomainInfo:
        return self._set_domain_lock(name, False)

    # -- mailboxes ------------------------------------------------------------------------
    def mailbox_list(self, domain: str, offset: int = 0, limit: int = 0, filter: str = "", sort: str = "name",
                     descending: bool = False) -> MailboxPage:
        """A page of a domain's mailboxes; plain column reads (a domain may hold 100,000)."""
        with self.db.read() as session:
            drow = self._domain(session, domain)
            cond = Mailbox.domain_id == drow.id
            if filter:
                cond = cond & Mailbox.name.contains(filter.strip().lower(), autoescape=True)
            total = int(session.scalar(select(func.count(Mailbox.id)).where(cond)) or 0)
            query = (select(Mailbox.name, Mailbox.locked, Mailbox.message_count, Mailbox.total_bytes,
                            Mailbox.quota_bytes, Mailbox.has_user)
                     .where(cond).order_by(*_order(Mailbox, sort, descending)).offset(max(0, offset)))
            if limit > 0:
                query = query.limit(limit)
            dname, dlocked = drow.name, drow.locked
            items = tuple(MailboxInfo(name=name, domain=dname, address=f"{name}@{dname}", locked=locked,
                                      domain_locked=dlocked, message_count=count, total_bytes=size,
                                      quota_bytes=quota, has_user=has_user)
                          for name, locked, count, size, quota, has_user in session.execute(query))
        return MailboxPage(total=total, offset=offset, domain=dname, items=items)

    def mailbox_get(self, address: str) -> MailboxInfo:
        with self.db.read() as session:
            box, domain = self._mailbox(session, address)
            return mailbox_info(box, domain)

    def mailbox_add(self, address: str, password: str | None = None, create_user: bool | None = None,
                    quota: Any = None) -> MailboxInfo:
        """Create a mailbox, its Maildir and its password or associated user in one transaction.

        Every check runs inside it, under the domain's lock, before anything is made, so bad input
        changes nothing and two requests for one name cannot both pass. What lies outside the
        database goes again if the transaction fails: the folder here, a system account or a
        directory entry in the auth method (undone when the session rolls back)."""
        folder: Path | None = None
        made_folder = False
        try:
            with self.db.write() as session:
                method = self._method(session)
                name, domain_name = split_address(address, method)
                domain = self._domain(session, domain_name, lock=True)
                if create_user is None:
                    create_user = bool(Settings.get(session, "createuser"))
                quota_bytes = catalog.resolve("default_quota").check(
                    quota if quota is not None else Settings.get(session, "default_quota"))
                if session.scalars(select(Mailbox.id).where(Mailbox.domain_id == domain.id,
                                                            Mailbox.name == name)).first() is not None:
                    raise AlreadyExists(f"The mailbox {name}@{domain.name} already exists.")
                if method == "passwordfile":
                    if not password:
                        raise PasswordRefused(passwords.EMPTY, hint="Give it at the prompt or with --password-stdin.")
                    create_user = True  # as the original's /createuser: the password file entry is the user
                self.auth.check_new_mailbox(session, name, domain.name, create_user=create_user, password=password)
                if password is not None:
                    passwords.check_password(password)   # the one rule, the same for every method...
                    self.auth.check_password(password)   # ...then the method's own, if it has one
                folder = self.store.mailbox_dir(domain.name, name)
                existed = folder.exists()
                self.store.create_mailbox_folder(domain.name, name, domains_exist=True)
                made_folder = not existed
                box = Mailbox(domain_id=domain.id, name=name, locked=False, quota_bytes=quota_bytes,
                              message_count=0, total_bytes=0, has_user=bool(create_user))
                session.add(box)
                try:
                    session.flush()
                except IntegrityError:   # added at the same moment by another node: its folder now
                    made_folder = False
                    raise AlreadyExists(f"The mailbox {name}@{domain.name} already exists.") from None
                # The associated user first: with local accounts or a directory the password is
                # set on the account, so it must exist.
                if create_user:
                    self.auth.create_user(session, box.id, name, domain.name, password)
                elif password is not None:
                    self.auth.set_password(session, box.id, password)
                session.execute(update(Domain).where(Domain.id == domain.id)
                                .values(mailbox_count=Domain.mailbox_count + 1))
                session.refresh(domain)
                box_id = box.id
                info, domain_now = mailbox_info(box, domain), domain_info(domain)
        except BaseException:
            if made_folder and folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if existed:
            adopted = self.store.adopt(box_id, folder)
            if adopted:
                log.warning("mailbox %s@%s adopted %d messages already in %s", name, domain_now.name, adopted, folder)
                info, domain_now = self.mailbox_get(info.address), self.domain_get(domain_now.name)
        self.publish("mailbox.added", info)
        self.publish("domain.changed", domain_now)
        return info

    def mailbox_delete(self, address: str, delete_user: bool = False) -> MailboxAddress:
        with self.db.read() as session:
            box, domain = self._mailbox(session, address)
            name, domain_name = box.name, domain.name
        with self.store.removing(self.store.mailbox_dir(domain_name, name)):
            with self.db.write() as session:
                box, domain = self._mailbox(session, f"{name}@{domain_name}", lock=True)
                if delete_user:
                    self.auth.delete_user(session, box.id, name, domain_name)
                session.execute(update(Domain).where(Domain.id == domain.id).values(
                    mailbox_count=Domain.mailbox_count - 1,
                    message_count=Domain.message_count - box.message_count,
                    total_bytes=Domain.total_bytes - box.total_bytes))
                box_id = box.id
                session.delete(box)
                session.flush()
                session.refresh(domain)
                domain_now = domain_info(domain)
        self.store.forget([box_id])
        address = f"{name}@{domain_name}"
        self.publish("mailbox.deleted", MailboxDeleted(address=address, domain=domain_name, name=name))
        self.publish("domain.changed", domain_now)
        return MailboxAddress(address=address)

    def _set_mailbox_lock(self, address: str, locked: bool) -> MailboxInfo:
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            if not locked and domain.locked:
                raise Locked(f"The domain {domain.name} is locked: unlock the domain, not the mailbox "
                               "(a mailbox inside a locked domain cannot be unlocked on its own).")
            box.locked = locked
            info = mailbox_info(box, domain)
        self.publish("mailbox.changed", info)
        return info

    def mailbox_lock(self, address: str) -> MailboxInfo:
        return self._set_mailbox_lock(address, True)

    def mailbox_unlock(self, address: str) -> MailboxInfo:
        return self._set_mailbox_lock(address, False)

    def mailbox_set_password(self, address: str, password: str) -> MailboxAddress:
        passwords.check_password(password)
        self.auth.check_password(password)
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            self.auth.set_password(session, box.id, password)
            info = mailbox_info(box, domain)
        self.publish("mailbox.changed", info)
        return MailboxAddress(address=info.address)

    def mailbox_set_quota(self, address: str, quota: Any = None, check_quota: bool = False,
                          expected_quota: int | None = None) -> MailboxInfo:
        """Set or clear a mailbox's quota. With ``check_quota`` (the mailbox's property sheet) refuse
        with Conflict, changing nothing, when the quota is no longer ``expected_quota`` (what the
        sheet showed: someone changed it since) and not already the new one."""
        quota_bytes = catalog.resolve("default_quota").check(quota)
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            if check_quota and box.quota_bytes not in (expected_quota, quota_bytes):
                now = "none" if box.quota_bytes is None else f"{box.quota_bytes:,} bytes"
                raise Conflict(f"The quota of {mailbox_info(box, domain).address} was changed by another "
                               f"administrator after you read it; it is now {now}. Nothing was changed. Apply "
                               "again to replace it with your value.")
            box.quota_bytes = quota_bytes
            info = mailbox_info(box, domain)
        self.publish("mailbox.changed", info)
        return info

    # -- settings -------------------------------------------------------------------------
    def settings_get(self, name: str | None = None) -> dict[str, object]:
        """Every setting (or one) by name, as people may see it: a secret shows as "(set)"."""
        with self.db.read() as session:
            if name:
                spec = catalog.resolve(name)
                return {spec.name: catalog.shown(spec.name, Settings.get(session, spec.name))}
            return _shown_settings(session)

    def settings_snapshot(self) -> SettingsSnapshot:
        """Every setting as ``settings_get`` shows it, with its version, read in one transaction:
        what a property sheet starts from and later sends back as ``expected_version``."""
        with self.db.read() as session:
            values = _shown_settings(session)
            versions = Settings.versions(session)
        return SettingsSnapshot(values=values, versions=versions)

    def settings_set(self, name: str, value: Any, expected_version: int | None = None) -> SettingChange | MailrootMove:
        """Change one setting. With ``expected_version`` (a property sheet: the version it read),
        refuse with Conflict and change nothing when someone changed the setting since; without it
        the last writer wins (``winpop set``: an explicit command)."""
        spec = catalog.resolve(name)
        if not spec.writable:
            raise Invalid(f"The setting '{spec.name}' is chosen when the service is set up and cannot be changed.")
        if spec.secret and value == catalog.SECRET_SHOWN:
            with self.db.read() as session:
                version = Settings.version(session, spec.name)
            return SettingChange(name=spec.name, value=catalog.SECRET_SHOWN, restart=spec.restart,
                                 version=version)   # unchanged
        checked = spec.check(value)
        if spec.name == "mailroot":
            if expected_version is not None:
                # Checked before the move (which takes its own transactions): a change that lands in
                # between is the last writer's, as with winpop.
                with self.db.read() as session:
                    self._check_version(session, spec, checked, expected_version, lock=False)
            return self._set_mailroot(checked, restart=spec.restart)
        if spec.secret and checked and not is_sealed(checked):
            if self.sealer is None:
                raise Unavailable(f"The setting '{spec.name}' is stored encrypted with the server key; set it "
                                  "through the running service.", hint="Use winpop set or the console.")
            checked = self.sealer.seal(spec.name, str(checked))
        try:
            version = self._write_setting(spec, checked, expected_version)
        except IntegrityError:
            # A setting never stored has no row to lock: two administrators storing it at once both
            # insert, and the second insert fails at commit (PostgreSQL). Once more, now that the row
            # exists: a property sheet's expected version is then refused (Conflict, naming who
            # changed it), winpop's last write wins.
            version = self._write_setting(spec, checked, expected_version)
        shown = catalog.shown(spec.name, checked)
        self.publish("settings.changed", SettingChanged(name=spec.name, value=shown, version=version))
        return SettingChange(name=spec.name, value=shown, restart=spec.restart, version=version)

    def _write_setting(self, spec: catalog.SettingSpec, checked: Any, expected_version: int | None) -> int:
        """One write transaction: the version check, the auth rule, the value; the new version."""
        with self.db.write() as session:
            if expected_version is not None:
                self._check_version(session, spec, checked, expected_version)
            if spec.name == "auth":
                domains = session.scalar(select(func.count(Domain.id)))
                if domains and checked != Settings.get(session, "auth"):
                    raise Conflict(
                        f"The authentication method can be changed only while no domain exists; there "
                        f"{'is' if domains == 1 else 'are'} {domains} domain{'s' if domains != 1 else ''}. "
                        "Delete them first (as in the original POP3 Service).")
                if checked not in self.available_methods:
                    raise Unavailable(f"The '{checked}' method is not available on this server yet; "
                                      f"available: {', '.join(self.available_methods)}.")
            return Settings.put(session, spec.name, checked)

    @staticmethod
    def _check_version(session: Session, spec: catalog.SettingSpec, value: Any, expected: int, *,
                       lock: bool = True) -> None:
        """Raise Conflict if the setting moved past ``expected`` to a value other than ``value``
        (asking for the value it already has overwrites nobody's change). ``lock``: in a write
        transaction, hold the setting's row until it ends, so no one changes it in between."""
        version = Settings.version(session, spec.name, lock=lock)
        if version == expected:
            return
        current = Settings.get(session, spec.name)
        if version and current == value:
            return
        who = session.scalars(
            select(AuditEntry).where(AuditEntry.op == "settings.set", AuditEntry.outcome == "ok",
                                     AuditEntry.target.in_({spec.name, *spec.aliases}))
            .order_by(AuditEntry.id.desc()).limit(1)).first()
        by = (f" by {who.actor} at {who.at.astimezone().strftime('%H:%M:%S')}" if who is not None else
              " by another administrator")
        shown = catalog.shown(spec.name, current)
        raise Conflict(f"{spec.label} was changed{by} after you read it; it is now "
                       f"{'(none)' if shown in ('', None) else shown}. Nothing was changed. Apply again to replace "
                       "it with your value.")

    def _set_mailroot(self, value: str, *, restart: str | None) -> SettingChange | MailrootMove:
        """Change the root mail directory as one operation: the running store moves to it at once
        (MailStore.relocate: only if it already holds every indexed message file) or nothing changes."""
        path = check_mailroot_path(value)
        current = Path(os.path.normpath(self.store.root))
        if path != current:
            with self.db.read() as session:
                domains = set(session.scalars(select(Domain.name)))
            try:
                foreign = sorted(n for n in os.listdir(path)
                                 if n not in domains and not n.startswith(".") and n != "lost+found")
            except OSError as exc:
                raise Unavailable(f"Cannot list {path}: {exc.strerror}.") from None
            if foreign:
                # Not a folder of other things: the service would own it (a start with --user hands
                # the mail root to the service's user), and nothing that exists may change owner.
                raise Invalid(f"{path} already holds other things ({', '.join(shown_path(n) for n in foreign[:3])}"
                              f"{', ...' if len(foreign) > 3 else ''}): give an empty folder, or a copy of the "
                              "mail store (one folder per domain).")
            if self.db.is_postgres:
                with self.db.read() as session:
                    domain_count = session.scalar(select(func.count(Domain.id)))
                if domain_count:
                    raise Conflict("On PostgreSQL several nodes share one mail root (and the outgoing queue in it); "
                                   "one running node cannot move it. Stop every node, move the folder, and keep "
                                   "its path the same (a mount point or a symbolic link above it).")
            versions: list[int] = []
            found = self.store.relocate(path, lambda: versions.append(self._store_setting("mailroot", str(path))))
            result: SettingChange | MailrootMove = MailrootMove(
                name="mailroot", value=str(path), restart=restart, messages=found.messages,
                mailboxes=found.mailboxes, domains=found.domains, version=versions[-1] if versions else 0)
        else:
            result = SettingChange(name="mailroot", value=str(path), restart=restart,
                                   version=self._store_setting("mailroot", str(path)))
        self.publish("settings.changed", SettingChanged(name="mailroot", value=str(path), version=result.version))
        return result

    def _store_setting(self, name: str, value: Any) -> int:
        with self.db.write() as session:
            return Settings.put(session, name, value)

    # -- statistics and audit -------------------------------------------------------------
    def stat(self, domain: str | None = None) -> ServerStat | DomainStat:
        """Totals from the counters (never a folder walk): per domain, or per mailbox of one domain."""
        if domain:
            with self.db.read() as session:
                drow = self._domain(session, domain)
                name, mailboxes, messages, size, locked = (drow.name, drow.mailbox_count, drow.message_count,
                                                           drow.total_bytes, drow.locked)
            return DomainStat(domain=name, mailboxes=mailboxes, messages=messages, bytes=size, locked=locked,
                              items=self.mailbox_list(domain).items)
        with self.db.read() as session:
            n_domains, n_boxes, n_msgs, n_bytes = session.execute(
                select(func.count(Domain.id), func.coalesce(func.sum(Domain.mailbox_count), 0),
                       func.coalesce(func.sum(Domain.message_count), 0),
                       func.coalesce(func.sum(Domain.total_bytes), 0))).one()
            items = tuple(domain_info(d) for d in session.scalars(select(Domain).order_by(Domain.name)))
        return ServerStat(domains=n_domains, mailboxes=int(n_boxes), messages=int(n_msgs), bytes=int(n_bytes),
                          items=items)

    def audit(self, actor: str, op: str, target: str, detail: str, outcome: str, *,
              at: datetime | None = None) -> bool:
        """Write one audit entry in its own transaction (refusals too); False if the database
        refused it (full disk, lock held too long), so the caller can keep it and write it later."""
        try:
            with self.db.write() as session:
                # PostgreSQL text cannot hold NUL; a refused name may contain one: keep it visible.
                actor, op, target, detail = (str(v).replace("\x00", "\\x00") for v in (actor, op, target, detail))
                session.add(AuditEntry(actor=actor[:128], op=op[:64], target=target[:320], detail=detail,
                                       outcome=outcome[:32], at=at or datetime.now(UTC)))
        except Exception as exc:
            if database_error(exc) is None:
                log.exception("could not write the audit log")
            return False
        return True

    def audit_list(self, limit: int = 50) -> AuditPage:
        """The newest ``limit`` audit entries (1 to 10,000), newest first."""
        with self.db.read() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10000))))
            items = tuple(AuditRecord(at=r.at, actor=r.actor, op=r.op, target=r.target, detail=r.detail,
                                      outcome=r.outcome) for r in rows)
        return AuditPage(items=items)

    # -- import ---------------------------------------------------------------------------
    def import_windows(self, path: str, requester: Requester | None = None) -> ImportSummary:
        """Import ``DIR/<domain>/P3_<name>.mbx/*.eml``; each message keeps its file name as UIDL.
        Running it again imports only what is new. Only regular files below ``path`` are read,
        never through a symbolic link (each one is skipped and reported), and only what
        ``requester`` could read themselves (None: an in-process caller, the service's own rights)."""
        who = requester if requester is not None else Requester(0)
        root = Path(os.path.abspath(Path(path).expanduser()))
        try:
            root_fd = open_as(str(root), who, directory=True)
        except (NotFound, Invalid):
            raise NotFound(f"{root} is not a folder. Give the Windows POP3 Service's mail root (the folder "
                           r"holding one folder per domain, e.g. a copy of C:\Inetpub\mailroot\Mailbox).") from None
        summary = _ImportTally()
        warnings = summary.warnings
        found_any = False
        refused = 0

        def import_box(bfd: int, bdir: Path, mailbox_id: int) -> None:
            nonlocal refused
            with self.db.read() as session:
                known = set(session.scalars(select(Message.uidl).where(Message.mailbox_id == mailbox_id)))
            # Import order = arrival order: the file time to the nanosecond, then the file name, so
            # messages written in the same second never come out in directory order.
            files = sorted((st.st_mtime_ns, n) for n, st in _listing(bfd, bdir, warnings)
                           if n.endswith(".eml") and stat.S_ISREG(st.st_mode))
            for _arrived_ns, eml in files:
                base = import_base(eml)   # names are bytes: one that is not UTF-8 gets a stable digest name
                if uidl_for(base) in known:
                    summary.skipped += 1
                    continue
                fd = _open_below(bfd, eml, who, bdir / eml, warnings, directory=False)
                if fd is None:
                    refused += 1
                    continue
                try:
                    with os.fdopen(fd, "rb") as f:
                        arrived = datetime.fromtimestamp(os.fstat(f.fileno()).st_mtime, UTC)
                        data = f.read()
                except OSError as exc:
                    warnings.append(f"could not read {shown_path(bdir / eml)}: {exc.strerror}")
                    continue
                if base != eml:
                    warnings.append(f"{shown_path(bdir / eml)}: its name is not UTF-8 text; imported as {base}")
                try:
                    self.store.deliver_many([mailbox_id], data, base=base, arrived_at=arrived, check_quota=False)
                except MailError as exc:   # one message's failure does not end the import
                    warnings.append(f"could not import {shown_path(bdir / eml)}: {exc.message}")
                    continue
                known.add(uidl_for(base))
                summary.messages += 1

        def import_domain(dfd: int, dir_name: str, ddir: Path) -> None:
            nonlocal found_any, refused
            boxes = [n for n, st in _listing(dfd, ddir, warnings) if stat.S_ISDIR(st.st_mode)
                     and n.upper().startswith("P3_") and n.lower().endswith(".mbx")]
            if not boxes:
                return
            found_any = True
            try:
                dname = normalize_domain(dir_name)
            except MailError as exc:
                warnings.append(f"skipped folder {shown_path(dir_name)}: {shown_path(exc.message)}")
                return
            try:
                self.domain_add(dname)
                summary.domains += 1
            except Conflict:
                pass
            for box_name in boxes:
                raw = box_name[3:-4]
                try:
                    with self.db.read() as session:
                        mname = normalize_mailbox(raw, self._method(session))
                except MailError as exc:
                    warnings.append(f"skipped mailbox {shown_path(raw)}@{dname}: {shown_path(exc.message)}")
                    continue
                bfd = _open_below(dfd, box_name, who, ddir / box_name, warnings, directory=True)
                if bfd is None:
                    refused += 1
                    continue
                try:
                    mailbox_id = self._import_mailbox(mname, dname, summary)
                    if mailbox_id is not None:
                        import_box(bfd, ddir / box_name, mailbox_id)
                finally:
                    os.close(bfd)

        try:
            for dir_name, st in _listing(root_fd, root, warnings):
                if not stat.S_ISDIR(st.st_mode):
                    continue
                dfd = _open_below(root_fd, dir_name, who, root / dir_name, warnings, directory=True)
                if dfd is None:
                    refused += 1
                    continue
                try:
                    import_domain(dfd, dir_name, root / dir_name)
                finally:
                    os.close(dfd)
        finally:
            os.close(root_fd)
        if refused or len(warnings) > _MAX_WARNINGS:
            log.warning("import from %s: %d entries skipped (links, special files, or not readable by %s)",
                        root, refused + sum(1 for w in warnings if "symbolic link" in w), who.shown)
        if len(warnings) > _MAX_WARNINGS:
            warnings = warnings[:_MAX_WARNINGS] + [f"... and {len(warnings) - _MAX_WARNINGS} more"]
        if not found_any:
            raise NotFound(f"No Windows POP3 Service mailboxes under {root}: expected "
                           "<domain>\\P3_<name>.mbx\\*.eml folders.")
        if summary.mailboxes:
            warnings.append("Imported mailboxes have no password yet (Windows keeps it in a form that "
                            "cannot be carried over): set one with winpop changepwd.")
        return ImportSummary(domains=summary.domains, mailboxes=summary.mailboxes, messages=summary.messages,
                             skipped=summary.skipped, warnings=tuple(warnings))

    def _import_mailbox(self, name: str, domain: str, summary: _ImportTally) -> int | None:
        with self.db.read() as session:
            drow = self._domain(session, domain)
            existing = session.scalars(select(Mailbox.id).where(Mailbox.domain_id == drow.id,
                                                                Mailbox.name == name)).first()
        if existing is not None:
            return existing
        self.store.create_mailbox_folder(domain, name)
        with self.db.write() as session:
            drow = self._domain(session, domain, lock=True)
            box = Mailbox(domain_id=drow.id, name=name, locked=False, quota_bytes=None, message_count=0,
                          total_bytes=0, has_user=False)
            session.add(box)
            session.flush()
            session.execute(update(Domain).where(Domain.id == drow.id).values(mailbox_count=Domain.mailbox_count + 1))
            box_id = box.id
        summary.mailboxes += 1
        info = self.mailbox_get(f"{name}@{domain}")
        self.publish("mailbox.added", info)
        return box_id


_MAX_WARNINGS = 100


@dataclass
class _ImportTally:
    """What an import has done so far (frozen into an ImportSummary at the end)."""

    domains: int = 0
    mailboxes: int = 0
    messages: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)


def _listing(dir_fd: int, where: Path, warnings: list[str]) -> list[tuple[str, os.stat_result]]:
    """The entries of an open folder with their own (lstat) metadata, sorted; symbolic links and
    special files are left out and reported (the import never follows a link)."""
    items: list[tuple[str, os.stat_result]] = []
    try:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    warnings.append(f"skipped {shown_path(where / entry.name)}: a symbolic link "
                                    "(the import never follows links)")
                elif stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                    items.append((entry.name, st))
                else:
                    warnings.append(f"skipped {shown_path(where / entry.name)}: not a regular file or folder")
    except OSError as exc:
        warnings.append(f"could not list {where}: {exc.strerror}")
    return sorted(items)


def _open_below(dir_fd: int, name: str, who: Requester, shown: Path, warnings: list[str], *,
                directory: bool) -> int | None:
    """Open ``name`` in the open folder without following a link, if ``who`` may read it; None
    (and a warning) otherwise."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if directory else os.O_NONBLOCK)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:   # ELOOP: it became a link since the listing
        warnings.append(f"skipped {shown_path(shown)}: {exc.strerror}")
        return None
    st = os.fstat(fd)
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    if not kind_ok or not who.may(st, READ | (SEARCH if directory else 0)):
        os.close(fd)
        warnings.append(f"skipped {shown_path(shown)}: " + (f"{who.shown} may not read it" if kind_ok
                                                           else "not a regular file"))
        return None
    return fd
