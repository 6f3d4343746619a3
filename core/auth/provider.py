"""Auth providers: who a login is and whether a password is right (DESIGN §6).

``AuthProvider`` is the interface the protocol servers and the SASL mechanisms use,
``AccountAdmin`` the one the administration operations use; ``AuthMethod`` is both, and every
method declares it: ``passwordfile`` here over the database and the server key, ``local`` (PAM)
in core.auth.local, ``directory`` (LDAP) in core.auth.directory.
"""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.auth.keystore import ServerKey
from core.auth.scram import DEFAULT_ITERATIONS, ScramVerifier, make_verifier, verify_plain
from core.db import Database
from core.errors import Invalid, NotFound
from core.model import MailboxRef
from core.names import split_address
from core.passwords import MAX_LENGTH, check_form  # what a method can store; the rule itself is core.admin's
from core.tables import Credential, Domain, Mailbox, utcnow

log = logging.getLogger(__name__)

PASSWORD_MAX_LEN = MAX_LENGTH   # the one password rule is core.passwords; kept for importers

# SASL mechanism names as advertised (RFC 4422 registry spelling).
PLAIN, LOGIN, CRAM_MD5, SCRAM_SHA_256, NTLM = "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"
PLAINTEXT_MECHANISMS = (PLAIN, LOGIN)


def mailbox_ref(mailbox: Mailbox, domain: Domain, mailroot: Path | None) -> MailboxRef:
    """The principal every provider hands out after a logon (its Maildir when the root is known)."""
    path = str(mailroot / domain.name / mailbox.name) if mailroot is not None else ""
    return MailboxRef(id=mailbox.id, name=mailbox.name, domain=domain.name,
                      address=f"{mailbox.name}@{domain.name}", locked=bool(mailbox.locked),
                      domain_locked=bool(domain.locked), path=path)


def secret_aad(mailbox_id: int) -> bytes:
    """The associated data that ties an encrypted secret to its mailbox row (no swapping rows)."""
    return f"pop3-service/credential/mailbox:{int(mailbox_id)}".encode("ascii")


class _Found(NamedTuple):
    """A looked-up mailbox with its credentials copied out of the session."""

    ref: MailboxRef
    verifier: ScramVerifier | None
    secret_enc: bytes | None


@runtime_checkable
class AuthProvider(Protocol):
    """What the protocol servers and the SASL mechanisms ask of an authentication method:
    resolve logins ('alice@example.com') to mailboxes and check their passwords."""

    method: str
    supports_challenge_response: bool
    # PBKDF2 rounds of new SCRAM verifiers; shown to unknown users too, so "i=" reveals nothing.
    scram_iterations: int

    def resolve(self, login: str) -> MailboxRef | None:
        """The mailbox ``login`` names (locked or not), or None."""
        ...

    def verify_password(self, login: str, password: str) -> MailboxRef | None:
        """The mailbox if ``password`` is right for ``login``, else None (same cost for unknown logins)."""
        ...

    def secret_for(self, login: str) -> tuple[MailboxRef, str] | None:
        """The clear password-equivalent for APOP / CRAM-MD5 / NTLM, or None. May raise Unavailable."""
        ...

    def scram_for(self, login: str) -> tuple[MailboxRef, ScramVerifier] | None:
        """The SCRAM-SHA-256 verifier (salt, iterations, stored_key, server_key), or None."""
        ...

    def mechanisms(self, *, tls: bool, spa_required: bool) -> list[str]:
        """The SASL mechanisms to advertise on a connection with or without TLS."""
        ...

    def close(self) -> None:
        """Let go of what the method holds open (directory connections) when it is replaced."""
        ...


@runtime_checkable
class AccountAdmin(Protocol):
    """What the administration operations (core.admin) ask of an authentication method about a
    mailbox's account. Each call gets the caller's write transaction: work outside the database
    (a system account, a directory entry) is undone when it rolls back, or done after it commits."""

    def check_password(self, password: str) -> str:
        """``password`` if this method can set it, else Invalid saying why (before anything changes)."""
        ...

    def check_new_mailbox(self, session: Session, name: str, domain: str, *, create_user: bool,
                          password: str | None) -> None:
        """Refuse a new mailbox this method cannot serve (the name taken, its account missing...)."""
        ...

    def create_user(self, session: Session, mailbox_id: int, name: str, domain: str, password: str | None) -> None:
        """Make the mailbox's associated user (and set its password, if given)."""
        ...

    def set_password(self, session: Session, mailbox_id: int, password: str) -> None:
        """Store a new password for a mailbox inside the caller's write transaction."""
        ...

    def delete_user(self, session: Session, mailbox_id: int, name: str, domain: str) -> None:
        """Remove the mailbox's associated user with the mailbox."""
        ...

    def delete_users(self, session: Session, domain_id: int) -> None:
        """Remove the associated users of a domain's mailboxes with the domain."""
        ...


@runtime_checkable
class AuthMethod(AuthProvider, AccountAdmin, Protocol):
    """One authentication method of the server setting ``auth`` (passwordfile, local, directory):
    the logon side and the administration side together."""


class PasswordFileProvider(AuthMethod):
    """The ``passwordfile`` method: SCRAM verifiers and server-key-encrypted secrets in the database."""

    method = "passwordfile"
    supports_challenge_response = True

    def __init__(self, db: Database, key: ServerKey, *, mailroot: Path | None = None,
                 scram_iterations: int = DEFAULT_ITERATIONS) -> None:
        self._db = db
        self._key = key
        self._mailroot = Path(mailroot) if mailroot is not None else None
        self.scram_iterations = scram_iterations
        # Checked against when the login is unknown, so that costs as much as a wrong password.
        self._dummy = make_verifier(secrets.token_urlsafe(24), scram_iterations)

    # --- lookups ------------------------------------------------------------------------------

    def _ref(self, mailbox: Mailbox, domain: Domain) -> MailboxRef:
        return mailbox_ref(mailbox, domain, self._mailroot)

    def _lookup(self, login: str) -> _Found | None:
        try:
            name, domain_name = split_address(login, self.method)
        except (Invalid, TypeError):
            return None
        with self._db.read() as session:
            row = session.execute(
                select(Mailbox, Domain, Credential)
                .join(Domain, Mailbox.domain_id == Domain.id)
                .outerjoin(Credential, Credential.mailbox_id == Mailbox.id)
                .where(Domain.name == domain_name, Mailbox.name == name)
            ).first()
            if row is None:
                return None
            mailbox, domain, c = row
            # Copy out plain values inside the session: no ORM object leaves this method.
            verifier = None if c is None else ScramVerifier(
                bytes(c.scram_salt), int(c.scram_iterations), bytes(c.scram_stored_key), bytes(c.scram_server_key)
            )
            secret_enc = None if c is None or c.secret_enc is None else bytes(c.secret_enc)
            return _Found(self._ref(mailbox, domain), verifier, secret_enc)

    def resolve(self, login: str) -> MailboxRef | None:
        """The mailbox ``login`` names (case-insensitive user@domain), locked or not, or None."""
        found = self._lookup(login)
        return found.ref if found else None

    def verify_password(self, login: str, password: str) -> MailboxRef | None:
        """The mailbox if ``password`` is right; an unknown login runs PBKDF2 on a dummy verifier too."""
        found = self._lookup(login)
        if found is None or found.verifier is None:
            verify_plain(str(password), self._dummy)
            return None
        return found.ref if verify_plain(str(password), found.verifier) else None

    def secret_for(self, login: str) -> tuple[MailboxRef, str] | None:
        """The decrypted password-equivalent; raises Unavailable if the server key cannot decrypt it."""
        found = self._lookup(login)
        if found is None or found.secret_enc is None:
            return None
        secret = self._key.decrypt(found.secret_enc, secret_aad(found.ref.id))
        return found.ref, secret.decode("utf-8", "surrogatepass")

    def scram_for(self, login: str) -> tuple[MailboxRef, ScramVerifier] | None:
        """The mailbox and its stored SCRAM-SHA-256 verifier, or None."""
        found = self._lookup(login)
        if found is None or found.verifier is None:
            return None
        return found.ref, found.verifier

    def mechanisms(self, *, tls: bool, spa_required: bool) -> list[str]:
        """Challenge-response mechanisms always; PLAIN and LOGIN only over TLS when SPA is required."""
        offered = [SCRAM_SHA_256, CRAM_MD5, NTLM]
        if tls or not spa_required:
            offered += [PLAIN, LOGIN]
        return offered

    def close(self) -> None:
        """Nothing to let go of: the database belongs to the service."""

    # --- changes ------------------------------------------------------------------------------

    def check_password(self, password: str) -> str:
        return check_form(password)

    def check_new_mailbox(self, session: Session, name: str, domain: str, *, create_user: bool,
                          password: str | None) -> None:
        """Any name will do; core.admin requires the password (the password file's entry is the user)."""

    def create_user(self, session: Session, mailbox_id: int, name: str, domain: str, password: str | None) -> None:
        """The password file's entry is the user: storing its password makes it."""
        if password is not None:
            self.set_password(session, mailbox_id, password)

    def delete_user(self, session: Session, mailbox_id: int, name: str, domain: str) -> None:
        """Nothing to do: the credentials row goes with the mailbox row."""

    def delete_users(self, session: Session, domain_id: int) -> None:
        """Nothing to do: the credentials rows go with the mailbox rows."""

    def set_password(self, session: Session, mailbox_id: int, password: str) -> None:
        """Store the SCRAM verifier and the encrypted secret for ``mailbox_id`` in ``session``."""
        check_form(password)
        if session.get(Mailbox, mailbox_id) is None:
            raise NotFound(f"There is no mailbox with id {mailbox_id}; it may have been deleted.")
        verifier = make_verifier(password, self.scram_iterations)
        secret = self._key.encrypt(password.encode("utf-8"), secret_aad(mailbox_id))
        credential = session.get(Credential, mailbox_id)
        if credential is None:
            credential = Credential(mailbox_id=mailbox_id)
            session.add(credential)
        credential.scram_salt = verifier.salt
        credential.scram_iterations = verifier.iterations
        credential.scram_stored_key = verifier.stored_key
        credential.scram_server_key = verifier.server_key
        credential.secret_enc = secret
        credential.changed_at = utcnow()
        session.flush()


class PlaintextOnly:
    """For providers that can only check a password they are given (PAM, an LDAP bind): no
    reusable secret, so no APOP, CRAM-MD5, SCRAM or NTLM; PLAIN and LOGIN, inside TLS when SPA
    is required."""

    supports_challenge_response = False
    scram_iterations = DEFAULT_ITERATIONS   # no verifiers here; what an unknown user's SCRAM is shown

    def secret_for(self, login: str) -> None:
        return None

    def scram_for(self, login: str) -> None:
        return None

    def mechanisms(self, *, tls: bool, spa_required: bool) -> list[str]:
        return [PLAIN, LOGIN] if tls or not spa_required else []

    def check_password(self, password: str) -> str:
        return check_form(password)

    def close(self) -> None:
        """Nothing held open by default."""
