"""The ``directory`` method: mailboxes map to LDAP entries (OpenLDAP, Active Directory, any LDAP v3).

A logon searches the mailbox's entry with the service's bind account, then binds as that entry
with the given password (DESIGN §6). "Wrong password" (invalidCredentials) and "directory
unreachable" are kept apart: the latter raises ``Unavailable``, which POP3 answers with
``-ERR [SYS/TEMP]`` and SMTP with ``454 4.7.0`` without counting a failed logon.

Connections are kept in two small pools (searches as the bind account; user binds on
connections whose identity changes with each bind), over the URLs in failover order, with
StartTLS on ``ldap://`` unless turned off. Successful binds may be cached for a few seconds
as a salted HMAC (``ldap_bind_cache_seconds``; off by default). All calls block: the service
runs them in worker threads.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn
from sqlalchemy import select
from sqlalchemy.event import listen as on_session_event
from sqlalchemy.orm import Session

from core.auth.provider import AuthMethod, PlaintextOnly, mailbox_ref
from core.db import Database
from core.errors import AccountMissing, Conflict, Forbidden, Invalid, NotFound, PasswordRefused, Unavailable
from core.model import MailboxRef
from core.names import split_address
from core.parsing import parse_ldap_urls
from core.passwords import check_form
from core.sealer import Sealer, is_sealed
from core.tables import Domain, Mailbox

log = logging.getLogger(__name__)

# LDAP result codes (RFC 4511 §4.1.9) that mean "the credentials are wrong".
INVALID_CREDENTIALS = 49
_INSUFFICIENT_ACCESS = 50
_NO_SUCH_OBJECT = 32
_CONSTRAINT_VIOLATION = 19
_ENTRY_EXISTS = 68
_UNWILLING = 53
DEFAULT_FILTERS = {"openldap": "(mail={address})", "ad": "(&(objectClass=user)(userPrincipalName={address}))"}
_IDLE_CONNECTIONS = 8


@dataclass(frozen=True)
class DirectoryConfig:
    """The ``ldap_*`` settings the provider works from (bind password in clear, in memory only)."""

    urls: tuple[str, ...]
    base_dn: str
    bind_dn: str = ""
    bind_password: str = ""
    server_type: str = "openldap"
    starttls: bool = True
    ca_file: str = ""
    user_filter: str = ""
    user_container: str = ""
    page_size: int = 500
    timeout: int = 5
    bind_cache_seconds: int = 0

    def __repr__(self) -> str:   # never show the bind password
        return f"DirectoryConfig(urls={self.urls!r}, base_dn={self.base_dn!r}, bind_dn={self.bind_dn!r})"

    @classmethod
    def from_settings(cls, values: dict[str, Any], sealer: Sealer | None) -> DirectoryConfig:
        """Build from the settings dict; ``sealer`` unseals the bind password (core/sealer.py)."""
        stored = str(values.get("ldap_bind_password") or "")
        if is_sealed(stored) and sealer is None:
            raise Unavailable("The directory bind password cannot be read without the server key.")
        # A clear value only in tests that bypass the sealer.
        password = sealer.unseal("ldap_bind_password", stored) if sealer is not None else stored
        return cls(urls=tuple(parse_ldap_urls(values.get("ldap_urls", ""))),
                   base_dn=str(values.get("ldap_base_dn") or ""),
                   bind_dn=str(values.get("ldap_bind_dn") or ""), bind_password=password,
                   server_type=str(values.get("ldap_type") or "openldap"),
                   starttls=bool(values.get("ldap_starttls", True)), ca_file=str(values.get("ldap_ca_file") or ""),
                   user_filter=str(values.get("ldap_user_filter") or ""),
                   user_container=str(values.get("ldap_user_container") or ""),
                   page_size=int(values.get("ldap_page_size") or 500), timeout=int(values.get("ldap_timeout") or 5),
                   bind_cache_seconds=int(values.get("ldap_bind_cache_seconds") or 0))


class _Pool:
    """Idle bound connections of one kind; a connection that failed is dropped, never returned."""

    def __init__(self) -> None:
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def take(self) -> Any | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give(self, conn: Any) -> None:
        with self._lock:
            if len(self._idle) < _IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        _close(conn)

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)


def _close(conn: Any) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - closing a broken connection
        pass


class DirectoryProvider(PlaintextOnly, AuthMethod):
    """The ``directory`` method over ldap3."""

    method = "directory"

    def __init__(self, db: Database, config: DirectoryConfig, *, mailroot: Path | None = None) -> None:
        self._db = db
        self.config = config
        self._mailroot = Path(mailroot) if mailroot is not None else None
        self._preferred = 0                    # index of the URL that answered last
        self._service = _Pool()                # bound as the bind account: searches and changes
        self._users = _Pool()                  # rebound to each user that logs on
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._cache_key = secrets.token_bytes(32)
        self._lock = threading.Lock()

    def close(self) -> None:
        """Unbind every pooled connection (when the provider is replaced or the service stops)."""
        self._service.clear()
        self._users.clear()

    # --- connections --------------------------------------------------------------------------

    def _server(self, url: str) -> Any:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.config.ca_file or None,
                        version=ssl.PROTOCOL_TLS_CLIENT)
        return ldap3.Server(url, use_ssl=url.lower().startswith("ldaps://"), tls=tls, get_info=ldap3.NONE,
                            connect_timeout=self.config.timeout)

    def _open(self, user: str | None, password: str | None) -> Any:
        """A connection to the first reachable URL (failover), TLS set up, bound as ``user``.

        Raises Unavailable if no server answers; returns the connection even if the bind was
        refused (the caller reads ``conn.result``)."""
        urls = self.config.urls
        if not urls:
            raise Unavailable("No directory server is configured.", hint="Set one with: winpop set ldap_urls ldap://server")
        errors = []
        start = self._preferred
        for i in range(len(urls)):
            index = (start + i) % len(urls)
            url = urls[index]
            conn = ldap3.Connection(self._server(url), user=user, password=password, auto_bind=ldap3.AUTO_BIND_NONE,
                                    receive_timeout=self.config.timeout, raise_exceptions=False,
                                    read_only=False, auto_referrals=False)
            try:
                conn.open(read_server_info=False)
                if self.config.starttls and not url.lower().startswith("ldaps://"):
                    if not conn.start_tls(read_server_info=False):
                        raise Unavailable(f"{url} refused StartTLS: {conn.result.get('description')}")
                if user is not None:
                    conn.bind(read_server_info=False)
            except (LDAPException, OSError, ssl.SSLError, Unavailable) as exc:
                _close(conn)
                errors.append(f"{url}: {getattr(exc, 'message', None) or exc}")
                continue
            if index != self._preferred:
                log.warning("directory: using %s (%s)", url, "; ".join(errors) or "failover")
                self._preferred = index
            return conn
        detail = "; ".join(errors)
        log.error("directory unreachable: %s", detail)
        raise Unavailable(f"The directory is unreachable ({detail}).")

    @contextmanager
    def _service_conn(self) -> Iterator[Any]:
        """A connection bound as the bind account, from the pool; dropped if anything fails."""
        conn = self._service.take()
        if conn is None or conn.closed:
            conn = self._open(self.config.bind_dn or None, self.config.bind_password or None)
            if self.config.bind_dn and not conn.bound:
                result = dict(conn.result or {})
                _close(conn)
                log.error("directory: the bind account %s was refused: %s", self.config.bind_dn,
                          result.get("description"))
                raise Unavailable(f"The directory refused the service's bind account {self.config.bind_dn} "
                                  f"({result.get('description')}); check ldap_bind_dn and ldap_bind_password.")
        try:
            yield conn
        except (LDAPException, OSError) as exc:
            _close(conn)
            raise Unavailable(f"The directory connection failed: {exc}") from None
        except BaseException:
            _close(conn)
            raise
        else:
            self._service.give(conn)

    def _user_bind(self, dn: str, password: str) -> bool:
        """Bind as ``dn``: True, False for wrong credentials; Unavailable if the directory fails."""
        conn, ok = self._users.take(), False
        if conn is not None:
            try:
                ok = bool(conn.rebind(user=dn, password=password, read_server_info=False))
            except (LDAPException, OSError):   # a pooled connection the server dropped: open a new one
                _close(conn)
                conn = None
        if conn is None:
            conn = self._open(dn, password)
            ok = bool(conn.bound)
        result = dict(conn.result or {})
        if ok:
            self._users.give(conn)
            return True
        if int(result.get("result", 0) or 0) == INVALID_CREDENTIALS:
            self._users.give(conn)
            return False
        _close(conn)
        log.error("directory: bind as %s failed: %s", dn, result.get("description"))
        raise Unavailable(f"The directory could not check the password ({result.get('description')}).")

    # --- entries ------------------------------------------------------------------------------

    def user_filter(self, name: str, domain: str) -> str:
        """The search filter for a mailbox, with its values escaped (RFC 4515)."""
        template = self.config.user_filter or DEFAULT_FILTERS.get(self.config.server_type, DEFAULT_FILTERS["openldap"])
        return template.format(address=escape_filter_chars(f"{name}@{domain}"), name=escape_filter_chars(name),
                               domain=escape_filter_chars(domain))

    def find_entry(self, name: str, domain: str) -> str | None:
        """The DN of the mailbox's entry, None if there is none; Conflict if several match."""
        if not self.config.base_dn:
            raise Unavailable("No directory base DN is configured.",
                              hint="Set it with: winpop set ldap_base_dn dc=example,dc=com")
        with self._service_conn() as conn:
            ok = conn.search(self.config.base_dn, self.user_filter(name, domain), search_scope=ldap3.SUBTREE,
                             attributes=[], size_limit=2)
            code = int((conn.result or {}).get("result", 0) or 0)
            if not ok and code not in (0, _NO_SUCH_OBJECT, 4):   # 4: sizeLimitExceeded (two matches)
                raise Unavailable(f"The directory search failed ({conn.result.get('description')}).")
            dns = [r["dn"] for r in (conn.response or []) if r.get("type") == "searchResEntry"]
        if len(dns) > 1:
            log.error("directory: %d entries match %s@%s (%s)", len(dns), name, domain, self.user_filter(name, domain))
            raise Conflict(f"Several directory entries match {name}@{domain}; make the user filter match one.")
        return dns[0] if dns else None

    def _ref(self, mailbox: Mailbox, domain: Domain) -> MailboxRef:
        return mailbox_ref(mailbox, domain, self._mailroot)

    def resolve(self, login: str) -> MailboxRef | None:
        """The mailbox ``name@domain`` names (the same name may exist in several domains), or None."""
        try:
            name, domain_name = split_address(login, self.method)
        except (Invalid, TypeError):
            return None
        with self._db.read() as session:
            row = session.execute(select(Mailbox, Domain).join(Domain, Mailbox.domain_id == Domain.id)
                                  .where(Domain.name == domain_name, Mailbox.name == name)).first()
            return self._ref(*row) if row is not None else None

    def verify_password(self, login: str, password: str) -> MailboxRef | None:
        """Search the entry, bind as it; None for a wrong password, Unavailable if the directory fails."""
        ref = self.resolve(login)
        if ref is None or not isinstance(password, str) or not password:
            return None   # an empty password would be an unauthenticated bind (RFC 4513 §5.1.2)
        if self._cached(ref.address, password):
            return ref
        try:
            dn = self.find_entry(ref.name, ref.domain)
        except Conflict:
            return None
        if dn is None:
            log.warning("directory: no entry matches %s", ref.address)
            return None
        if not self._user_bind(dn, password):
            return None
        self._remember(ref.address, password)
        return ref


    # --- the bind cache -----------------------------------------------------------------------

    def _digest(self, address: str, password: str) -> bytes:
        return hmac.new(self._cache_key, f"{address}\x00{password}".encode("utf-8", "surrogatepass"),
                        hashlib.sha256).digest()

    def _cached(self, address: str, password: str) -> bool:
        if self.config.bind_cache_seconds <= 0:
            return False
        with self._lock:
            hit = self._cache.get(address)
        return bool(hit and hit[1] > time.monotonic() and hmac.compare_digest(hit[0], self._digest(address, password)))

    def _remember(self, address: str, password: str) -> None:
        if self.config.bind_cache_seconds <= 0:
            return
        with self._lock:
            now = time.monotonic()
            if len(self._cache) > 10000:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            self._cache[address] = (self._digest(address, password), now + self.config.bind_cache_seconds)

    def forget(self, address: str | None = None) -> None:
        """Drop cached binds (one address, or all)."""
        with self._lock:
            if address is None:
                self._cache.clear()
            else:
                self._cache.pop(address, None)

    # --- admin hooks --------------------------------------------------------------------------

    def check_new_mailbox(self, session: Session, name: str, domain: str, *, create_user: bool,
                          password: str | None) -> None:
        """Without 'create associated user' an entry must already match the mailbox."""
        if create_user:
            return
        if password:
            raise Invalid("Without 'create associated user' the mailbox uses the password of its existing "
                          "directory entry; give no password here.",
                          hint="Change it later with winpop changepwd.")
        if self.find_entry(name, domain) is None:
            raise AccountMissing(f"No directory entry matches {name}@{domain} ({self.user_filter(name, domain)} "
                                 f"under {self.config.base_dn}). Choose 'create associated user' or create the "
                                 "entry first.")

    def create_user(self, session: Session, mailbox_id: int, name: str, domain: str, password: str | None) -> None:
        """Create the entry in the container (or map to an existing one); removed again on rollback."""
        dn, created = self.ensure_entry(name, domain)
        if created:
            def undo(_session: Session) -> None:
                self.delete_entry(dn)
            on_session_event(session, "after_rollback", undo, once=True)
        if password:
            self.set_entry_password(dn, password)

    def ensure_entry(self, name: str, domain: str) -> tuple[str, bool]:
        """The entry's DN and whether it was created now (False: an entry matched already)."""
        existing = self.find_entry(name, domain)
        if existing is not None:
            log.warning("directory: the mailbox %s@%s maps to the existing entry %s", name, domain, existing)
            return existing, False

        address = f"{name}@{domain}"
        container = self.config.user_container or self.config.base_dn
        if self.config.server_type == "ad":
            dn = f"CN={escape_rdn(address)},{container}"
            attrs = {"objectClass": ["top", "person", "organizationalPerson", "user"], "cn": address,
                     "sAMAccountName": self._sam_name(name), "userPrincipalName": address, "mail": address,
                     "userAccountControl": "514"}   # disabled until a password is set (AD refuses otherwise)
        else:
            dn = f"uid={escape_rdn(address)},{container}"
            attrs = {"objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson"], "uid": address,
                     "cn": address, "sn": name, "mail": address}
        with self._service_conn() as conn:
            ok = conn.add(dn, attributes=attrs)
            result = dict(conn.result or {})
        if not ok:
            code = int(result.get("result", 0) or 0)
            if code == _INSUFFICIENT_ACCESS:
                raise Forbidden(f"The directory bind account may not create entries in {container}; create an "
                                f"entry for {address} there yourself, then add the mailbox without "
                                "'create associated user'.")
            if code == _ENTRY_EXISTS:
                raise Conflict(f"The directory already has an entry {dn} that the user filter does not match; "
                               "fix its mail attribute or the filter.")
            refusal = f"The directory refused to create {dn}: {result.get('description')} {result.get('message') or ''}"
            raise Invalid(refusal.strip())
        log.warning("directory: created %s for the mailbox %s", dn, address)
        return dn, True

    def _sam_name(self, name: str) -> str:
        """A pre-Windows 2000 logon name (20 characters); a clash gets a number, as in the original."""
        base = "".join(ch for ch in name if ch not in '"/\\[]:;|=,+*?<>@')[:20] or "pop3user"
        with self._service_conn() as conn:
            for n in range(100):
                candidate = base if n == 0 else f"{base[:20 - len(str(n))]}{n}"
                conn.search(self.config.base_dn, f"(sAMAccountName={escape_filter_chars(candidate)})",
                            search_scope=ldap3.SUBTREE, attributes=[], size_limit=1)
                if not [r for r in (conn.response or []) if r.get("type") == "searchResEntry"]:
                    return candidate
        raise Conflict(f"No free pre-Windows 2000 logon name for {name}.")

    def set_password(self, session: Session, mailbox_id: int, password: str) -> None:
        """Change the entry's password (Password Modify on LDAP, unicodePwd over LDAPS on AD)."""
        check_form(password)
        row = session.execute(select(Mailbox, Domain).join(Domain, Mailbox.domain_id == Domain.id)
                              .where(Mailbox.id == mailbox_id)).first()
        if row is None:
            raise NotFound(f"There is no mailbox with id {mailbox_id}; it may have been deleted.")
        box, domain = row
        dn = self.find_entry(box.name, domain.name)
        if dn is None:
            raise AccountMissing(f"No directory entry matches {box.name}@{domain.name}; the password cannot be "
                                 "set.")
        self.set_entry_password(dn, password)
        self.forget(f"{box.name}@{domain.name}")

    def set_entry_password(self, dn: str, password: str) -> None:
        """Set the password of the entry ``dn`` (also used by core.auth.migration)."""
        with self._service_conn() as conn:
            if self.config.server_type == "ad":
                ok = conn.extend.microsoft.modify_password(dn, password)
                if ok:
                    conn.modify(dn, {"userAccountControl": [("MODIFY_REPLACE", ["512"])]})
            else:
                # RFC 3062: the server hashes the password as it is configured to (slapd: {SSHA}).
                ok = conn.extend.standard.modify_password(user=dn, new_password=password)
            result = dict(conn.result or {})
        if ok:
            return
        code = int(result.get("result", 0) or 0)
        text = f"{result.get('description')}: {result.get('message') or ''}".strip(": ")
        if code == _INSUFFICIENT_ACCESS:
            raise Forbidden(f"The directory bind account may not set the password of {dn} ({text}).")
        if code in (_CONSTRAINT_VIOLATION, _UNWILLING):
            raise PasswordRefused(f"The directory refused the new password ({text}); Active Directory sets "
                                  "passwords "
                          "only over LDAPS and checks them against its password policy.")
        raise PasswordRefused(f"The directory refused the new password for {dn} ({text}).")

    def delete_user(self, session: Session, mailbox_id: int, name: str, domain: str) -> None:
        """Delete the mailbox's entry after the mailbox itself is gone."""
        dn = self.find_entry(name, domain)
        self.forget(f"{name}@{domain}")
        if dn is not None:
            on_session_event(session, "after_commit", lambda _s: self.delete_entry(dn), once=True)

    def delete_users(self, session: Session, domain_id: int) -> None:
        """With the domain: delete the entries of its mailboxes that have an associated user."""
        rows = session.execute(select(Mailbox.name, Domain.name).join(Domain, Mailbox.domain_id == Domain.id)
                               .where(Mailbox.domain_id == domain_id, Mailbox.has_user.is_(True))).all()
        dns = [dn for dn in (self.find_entry(n, d) for n, d in rows) if dn is not None]
        self.forget()
        if dns:
            def remove(_session: Session) -> None:
                for dn in dns:
                    self.delete_entry(dn)
            on_session_event(session, "after_commit", remove, once=True)

    def delete_entry(self, dn: str) -> None:
        """Delete the entry ``dn``; a failure is logged, not raised (it runs after a commit or a rollback)."""
        try:
            with self._service_conn() as conn:
                ok = conn.delete(dn)
                result = dict(conn.result or {})
        except Unavailable as exc:
            log.error("directory: could not delete %s: %s", dn, exc.message)
            return
        if ok or int(result.get("result", 0) or 0) == _NO_SUCH_OBJECT:
            log.warning("directory: deleted %s", dn)
        else:
            log.error("directory: could not delete %s: %s", dn, result.get("description"))
