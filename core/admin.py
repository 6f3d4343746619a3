"""The administration operations behind the admin channel: domains, mailboxes, settings, stat,
audit and import. One transaction per operation; a refusal changes nothing.

The service's IPC server calls these (in a worker thread) and audits every mutating call;
``publish`` carries change events to every open console.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core import settings as settings_mod
from core.auth.settings import SEALED_PREFIX, SECRET_SETTINGS, SECRET_SHOWN
from core.auth.settings import shown as shown_setting
from core.db import Database
from core.errors import Conflict, Invalid, MailError, NotFound, Unavailable
from core.model import DomainInfo, MailboxInfo, to_json
from core.names import display_domain, normalize_domain, normalize_mailbox, split_address
from core.settings import Settings
from core.store import MailStore
from core.tables import AuditEntry, Domain, Mailbox, Message

log = logging.getLogger(__name__)

Publish = Callable[[str, Any], None]


def domain_info(row: Domain) -> DomainInfo:
    return DomainInfo(name=row.name, display_name=display_domain(row.name), locked=row.locked,
                      mailbox_count=row.mailbox_count, message_count=row.message_count,
                      total_bytes=row.total_bytes)


def mailbox_info(row: Mailbox, domain: Domain) -> MailboxInfo:
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


def _arrival_key(path: Path) -> tuple[int, str]:
    """Import order = arrival order: the file time to the nanosecond, then the file name, so
    messages written in the same second never come out in directory order."""
    try:
        return path.stat().st_mtime_ns, path.name
    except OSError:   # gone meanwhile: reading it says so
        return 0, path.name


class Admin:
    """Every administrative operation, over the database, the mail store and the auth provider."""

    def __init__(self, db: Database, store: MailStore, *, auth: Any, publish: Publish | None = None,
                 available_methods: tuple[str, ...] = ("passwordfile",)) -> None:
        self.db = db
        self.store = store
        self.auth = auth
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
            raise NotFound(f"The domain {canonical} does not exist. Create it first with: winpop add {canonical}")
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
                    descending: bool = False) -> dict:
        with self.db.read() as session:
            query = select(Domain)
            count = select(func.count(Domain.id))
            if filter:
                cond = Domain.name.contains(filter.strip().lower(), autoescape=True)
                query, count = query.where(cond), count.where(cond)
            total = session.scalar(count)
            query = query.order_by(*_order(Domain, sort, descending)).offset(max(0, offset))
            if limit > 0:
                query = query.limit(limit)
            items = [to_json(domain_info(d)) for d in session.scalars(query)]
        return {"total": total, "offset": offset, "items": items}

    def domain_get(self, name: str) -> dict:
        with self.db.read() as session:
            return to_json(domain_info(self._domain(session, name)))

    def domain_add(self, name: str) -> dict:
        canonical = normalize_domain(name)
        with self.db.read() as session:
            if session.scalars(select(Domain.id).where(Domain.name == canonical)).first() is not None:
                raise Conflict(f"The domain {canonical} already exists.")
        existed = self.store.domain_dir(canonical).exists()
        self.store.create_domain_folder(canonical)
        try:
            with self.db.write() as session:
                if session.scalars(select(Domain.id).where(Domain.name == canonical)).first() is not None:
                    raise Conflict(f"The domain {canonical} already exists.")
                row = Domain(name=canonical, locked=False, mailbox_count=0, message_count=0, total_bytes=0)
                session.add(row)
                session.flush()
                info = domain_info(row)
        except BaseException:
            if not existed:
                with contextlib.suppress(OSError):
                    self.store.domain_dir(canonical).rmdir()
            raise
        self.publish("domain.added", to_json(info))
        return to_json(info)

    def domain_delete(self, name: str, delete_users: bool = False) -> dict:
        canonical = normalize_domain(name)
        with self.db.read() as session:
            self._domain(session, canonical)
        with self.store.removing(self.store.domain_dir(canonical)):
            with self.db.write() as session:
                row = self._domain(session, canonical, lock=True)
                if delete_users and hasattr(self.auth, "delete_users"):
                    self.auth.delete_users(session, row.id)
                session.delete(row)
        self.store.forget()
        self.publish("domain.deleted", {"name": canonical})
        return {"name": canonical}

    def _set_domain_lock(self, name: str, locked: bool) -> dict:
        with self.db.write() as session:
            row = self._domain(session, name, lock=True)
            row.locked = locked
            info = domain_info(row)
        self.publish("domain.changed", to_json(info))
        return to_json(info)

    def domain_lock(self, name: str) -> dict:
        return self._set_domain_lock(name, True)

    def domain_unlock(self, name: str) -> dict:
        return self._set_domain_lock(name, False)

    # -- mailboxes ------------------------------------------------------------------------
    def mailbox_list(self, domain: str, offset: int = 0, limit: int = 0, filter: str = "", sort: str = "name",
                     descending: bool = False) -> dict:
        """A page of a domain's mailboxes; plain column reads (a domain may hold 100,000)."""
        with self.db.read() as session:
            drow = self._domain(session, domain)
            cond = Mailbox.domain_id == drow.id
            if filter:
                cond = cond & Mailbox.name.contains(filter.strip().lower(), autoescape=True)
            total = session.scalar(select(func.count(Mailbox.id)).where(cond))
            query = (select(Mailbox.name, Mailbox.locked, Mailbox.message_count, Mailbox.total_bytes,
                            Mailbox.quota_bytes, Mailbox.has_user)
                     .where(cond).order_by(*_order(Mailbox, sort, descending)).offset(max(0, offset)))
            if limit > 0:
                query = query.limit(limit)
            dname, dlocked = drow.name, drow.locked
            items = [{"name": name, "domain": dname, "address": f"{name}@{dname}", "locked": locked,
                      "domain_locked": dlocked, "message_count": count, "total_bytes": size,
                      "quota_bytes": quota, "has_user": has_user}
                     for name, locked, count, size, quota, has_user in session.execute(query)]
        return {"total": total, "offset": offset, "domain": dname, "items": items}

    def mailbox_get(self, address: str) -> dict:
        with self.db.read() as session:
            box, domain = self._mailbox(session, address)
            return to_json(mailbox_info(box, domain))

    def mailbox_add(self, address: str, password: str | None = None, create_user: bool | None = None,
                    quota: Any = None) -> dict:
        with self.db.read() as session:
            method = self._method(session)
            name, domain_name = split_address(address, method)
            domain = self._domain(session, domain_name)
            if create_user is None:
                create_user = bool(Settings.get(session, "createuser"))
            quota_bytes = settings_mod.resolve("default_quota").check(
                quota if quota is not None else Settings.get(session, "default_quota"))
            if session.scalars(select(Mailbox.id).where(Mailbox.domain_id == domain.id,
                                                        Mailbox.name == name)).first() is not None:
                raise Conflict(f"The mailbox {name}@{domain.name} already exists.")
        if method == "passwordfile":
            if not password:
                raise Invalid("A mailbox of the encrypted password file needs a password: give one at the "
                              "prompt or with --password-stdin.")
            create_user = True  # as the original's /createuser: the password file entry is the user
        if hasattr(self.auth, "check_new_mailbox"):
            self.auth.check_new_mailbox(name, domain.name, create_user=create_user, password=password)
        if password is not None and hasattr(self.auth, "check_password"):
            self.auth.check_password(password)
        folder = self.store.mailbox_dir(domain.name, name)
        existed = folder.exists()
        self.store.create_mailbox_folder(domain.name, name)
        try:
            with self.db.write() as session:
                drow = self._domain(session, domain.name, lock=True)
                box = Mailbox(domain_id=drow.id, name=name, locked=False, quota_bytes=quota_bytes,
                              message_count=0, total_bytes=0, has_user=bool(create_user))
                session.add(box)
                session.flush()
                # The associated user first: with local accounts or a directory the password is
                # set on the account, so it must exist (the password file has no create_user).
                if create_user and hasattr(self.auth, "create_user"):
                    self.auth.create_user(session, box.id, name, drow.name, password)
                elif password is not None:
                    self.auth.set_password(session, box.id, password)
                session.execute(update(Domain).where(Domain.id == drow.id)
                                .values(mailbox_count=Domain.mailbox_count + 1))
                box_id = box.id
        except BaseException:
            if not existed:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        if existed:
            adopted = self.store.adopt(box_id, folder)
            if adopted:
                log.warning("mailbox %s@%s adopted %d messages already in %s", name, domain.name, adopted, folder)
        info = self.mailbox_get(f"{name}@{domain.name}")
        self.publish("mailbox.added", info)
        self._publish_domain(domain.name)
        return info

    def mailbox_delete(self, address: str, delete_user: bool = False) -> dict:
        with self.db.read() as session:
            box, domain = self._mailbox(session, address)
            name, domain_name = box.name, domain.name
        with self.store.removing(self.store.mailbox_dir(domain_name, name)):
            with self.db.write() as session:
                box, domain = self._mailbox(session, f"{name}@{domain_name}", lock=True)
                if delete_user and hasattr(self.auth, "delete_user"):
                    self.auth.delete_user(session, box.id, name, domain_name)
                session.execute(update(Domain).where(Domain.id == domain.id).values(
                    mailbox_count=Domain.mailbox_count - 1,
                    message_count=Domain.message_count - box.message_count,
                    total_bytes=Domain.total_bytes - box.total_bytes))
                box_id = box.id
                session.delete(box)
        self.store.forget([box_id])
        address = f"{name}@{domain_name}"
        self.publish("mailbox.deleted", {"address": address, "domain": domain_name, "name": name})
        self._publish_domain(domain_name)
        return {"address": address}

    def _publish_domain(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.publish("domain.changed", self.domain_get(name))

    def _set_mailbox_lock(self, address: str, locked: bool) -> dict:
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            if not locked and domain.locked:
                raise Conflict(f"The domain {domain.name} is locked: unlock the domain, not the mailbox "
                               "(a mailbox inside a locked domain cannot be unlocked on its own).")
            box.locked = locked
            info = to_json(mailbox_info(box, domain))
        self.publish("mailbox.changed", info)
        return info

    def mailbox_lock(self, address: str) -> dict:
        return self._set_mailbox_lock(address, True)

    def mailbox_unlock(self, address: str) -> dict:
        return self._set_mailbox_lock(address, False)

    def mailbox_set_password(self, address: str, password: str) -> dict:
        if hasattr(self.auth, "check_password"):
            self.auth.check_password(password)
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            self.auth.set_password(session, box.id, password)
            info = to_json(mailbox_info(box, domain))
        self.publish("mailbox.changed", info)
        return {"address": info["address"]}

    def mailbox_set_quota(self, address: str, quota: Any = None) -> dict:
        quota_bytes = settings_mod.resolve("default_quota").check(quota)
        with self.db.write() as session:
            box, domain = self._mailbox(session, address, lock=True)
            box.quota_bytes = quota_bytes
            info = to_json(mailbox_info(box, domain))
        self.publish("mailbox.changed", info)
        return info

    # -- settings -------------------------------------------------------------------------
    def settings_get(self, name: str | None = None) -> dict:
        with self.db.read() as session:
            if name:
                spec = settings_mod.resolve(name)
                return {spec.name: shown_setting(spec.name, Settings.get(session, spec.name))}
            return {k: shown_setting(k, v) for k, v in Settings.get_all(session).items()}

    def settings_set(self, name: str, value: Any) -> dict:
        spec = settings_mod.resolve(name)
        if not spec.writable:
            raise Invalid(f"The setting '{spec.name}' is chosen when the service is set up and cannot be changed.")
        if spec.name in SECRET_SETTINGS and value == SECRET_SHOWN:
            return {"name": spec.name, "value": SECRET_SHOWN, "restart": spec.restart}   # unchanged
        checked = spec.check(value)
        if spec.name in SECRET_SETTINGS and checked and not str(checked).startswith(SEALED_PREFIX):
            raise Unavailable(f"The setting '{spec.name}' is stored encrypted with the server key; set it "
                              "through the running service (winpop set or the console).")
        with self.db.write() as session:
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
            if spec.name == "mailroot":
                checked = self._check_mailroot(session, checked)
            Settings.put(session, spec.name, checked)
        self.publish("settings.changed", {"name": spec.name, "value": shown_setting(spec.name, checked)})
        return {"name": spec.name, "value": shown_setting(spec.name, checked), "restart": spec.restart}

    def _check_mailroot(self, session: Session, value: str) -> str:
        if not value:
            raise Invalid("The root mail directory cannot be empty.")
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise Invalid(f"The root mail directory must be an absolute path, not '{value}'.")
        names = list(session.scalars(select(Domain.name)))
        if path.resolve() != self.store.root.resolve():
            missing = [n for n in names if not (path / n).is_dir()]
            if missing:
                raise Conflict(
                    f"{path} does not hold the folders of the existing domains ({', '.join(missing[:5])}"
                    f"{', ...' if len(missing) > 5 else ''}). Stop the service, move the folders there, "
                    "then set it again; the service never moves mail by itself.")
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise Unavailable(f"Cannot create {path}: {exc.strerror}.") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise Unavailable(f"{path} is not writable by the service.")
        return str(path)

    # -- statistics and audit -------------------------------------------------------------
    def stat(self, domain: str | None = None) -> dict:
        """Totals from the counters (never a folder walk): per domain, or per mailbox of one domain."""
        if domain:
            with self.db.read() as session:
                drow = self._domain(session, domain)
                info = {"domain": drow.name, "mailboxes": drow.mailbox_count, "messages": drow.message_count,
                        "bytes": drow.total_bytes, "locked": drow.locked}
            return {**info, "items": self.mailbox_list(domain)["items"]}
        with self.db.read() as session:
            n_domains, n_boxes, n_msgs, n_bytes = session.execute(
                select(func.count(Domain.id), func.coalesce(func.sum(Domain.mailbox_count), 0),
                       func.coalesce(func.sum(Domain.message_count), 0),
                       func.coalesce(func.sum(Domain.total_bytes), 0))).one()
            items = [to_json(domain_info(d)) for d in session.scalars(select(Domain).order_by(Domain.name))]
        return {"domains": n_domains, "mailboxes": int(n_boxes), "messages": int(n_msgs), "bytes": int(n_bytes),
                "items": items}

    def audit(self, actor: str, op: str, target: str, detail: str, outcome: str) -> None:
        """Write one audit entry in its own transaction (refusals too)."""
        try:
            with self.db.write() as session:
                # PostgreSQL text cannot hold NUL; a refused name may contain one: keep it visible.
                actor, op, target, detail = (str(v).replace("\x00", "\\x00") for v in (actor, op, target, detail))
                session.add(AuditEntry(actor=actor[:128], op=op[:64], target=target[:320], detail=detail,
                                       outcome=outcome[:32], at=datetime.now(timezone.utc)))
        except Exception:
            log.exception("could not write the audit log")

    def audit_list(self, limit: int = 50) -> dict:
        with self.db.read() as session:
            rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(max(1, min(limit, 10000))))
            items = [{"at": r.at.isoformat(), "actor": r.actor, "op": r.op, "target": r.target,
                      "detail": r.detail, "outcome": r.outcome} for r in rows]
        return {"items": items}

    # -- import ---------------------------------------------------------------------------
    def import_windows(self, path: str) -> dict:
        """Import ``DIR/<domain>/P3_<name>.mbx/*.eml``; each message keeps its file name as UIDL.
        Running it again imports only what is new."""
        root = Path(path).expanduser()
        if not root.is_dir():
            raise NotFound(f"{root} is not a folder. Give the Windows POP3 Service's mail root "
                           r"(the folder holding one folder per domain, e.g. a copy of C:\Inetpub\mailroot\Mailbox).")
        summary: dict[str, Any] = {"domains": 0, "mailboxes": 0, "messages": 0, "skipped": 0, "warnings": []}
        warnings: list[str] = summary["warnings"]
        found_any = False
        for ddir in sorted(p for p in root.iterdir() if p.is_dir()):
            boxes = sorted(p for p in ddir.iterdir() if p.is_dir() and p.name.upper().startswith("P3_")
                           and p.name.lower().endswith(".mbx"))
            if not boxes:
                continue
            found_any = True
            try:
                dname = normalize_domain(ddir.name)
            except MailError as exc:
                warnings.append(f"skipped folder {ddir.name}: {exc.message}")
                continue
            try:
                self.domain_add(dname)
                summary["domains"] += 1
            except Conflict:
                pass
            for bdir in boxes:
                raw = bdir.name[3:-4]
                try:
                    with self.db.read() as session:
                        mname = normalize_mailbox(raw, self._method(session))
                except MailError as exc:
                    warnings.append(f"skipped mailbox {raw}@{dname}: {exc.message}")
                    continue
                mailbox_id = self._import_mailbox(mname, dname, summary)
                if mailbox_id is None:
                    continue
                with self.db.read() as session:
                    known = set(session.scalars(select(Message.uidl).where(Message.mailbox_id == mailbox_id)))
                for eml in sorted(bdir.glob("*.eml"), key=_arrival_key):
                    if eml.name in known:
                        summary["skipped"] += 1
                        continue
                    try:
                        data = eml.read_bytes()
                    except OSError as exc:
                        warnings.append(f"could not read {eml}: {exc.strerror}")
                        continue
                    arrived = datetime.fromtimestamp(eml.stat().st_mtime, timezone.utc)
                    self.store.deliver_many([mailbox_id], data, base=eml.name, arrived_at=arrived, check_quota=False)
                    summary["messages"] += 1
        if not found_any:
            raise NotFound(f"No Windows POP3 Service mailboxes under {root}: expected "
                           "<domain>\\P3_<name>.mbx\\*.eml folders.")
        if summary["mailboxes"]:
            warnings.append("Imported mailboxes have no password yet (Windows keeps it in a form that "
                            "cannot be carried over): set one with winpop changepwd.")
        return summary

    def _import_mailbox(self, name: str, domain: str, summary: dict) -> int | None:
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
        summary["mailboxes"] += 1
        info = self.mailbox_get(f"{name}@{domain}")
        self.publish("mailbox.added", info)
        return box_id
