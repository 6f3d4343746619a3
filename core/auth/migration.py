"""``winpop migrate NAME@DOMAIN``: move a password-file mailbox to a directory entry.

The original's ``migrateToAD``. The mailbox gets a directory entry (created in the user
container, or an existing one the user filter matches) carrying the password it had in the
password file, which the server key can still decrypt; its password-file credentials are
then removed. When no mailbox keeps password-file credentials, the server switches its
authentication method to ``directory`` — the one way to change it while domains exist.
"""
from __future__ import annotations

import logging

from sqlalchemy import func, select

from core.auth.directory import DirectoryProvider
from core.auth.keystore import ServerKey
from core.auth.provider import secret_aad
from core.db import Database
from core.errors import Conflict, NotFound
from core.model import Migration
from core.names import split_address
from core.settings import Settings
from core.tables import Credential, Domain, Mailbox

log = logging.getLogger(__name__)


def migrate_to_directory(db: Database, key: ServerKey, directory: DirectoryProvider, address: str) -> Migration:
    """Move one mailbox to its directory entry (the original's migrateToAD); says what it did."""
    with db.read() as session:
        method = Settings.get(session, "auth")
        if method != "passwordfile":
            raise Conflict(f"Migrating moves mailboxes of the encrypted password file to the directory; "
                           f"this server uses the '{method}' method.")
        name, domain_name = split_address(address, "passwordfile")
        row = session.execute(select(Mailbox.id, Credential.secret_enc).join(Domain, Mailbox.domain_id == Domain.id)
                              .outerjoin(Credential, Credential.mailbox_id == Mailbox.id)
                              .where(Domain.name == domain_name, Mailbox.name == name)).first()
    if row is None:
        raise NotFound(f"The mailbox {name}@{domain_name} does not exist.")
    mailbox_id, secret_enc = row
    # Directory names follow the directory's rules (no '+'); check before touching the directory.
    split_address(f"{name}@{domain_name}", "directory")
    password = None
    if secret_enc is not None:
        password = key.decrypt(bytes(secret_enc), secret_aad(mailbox_id)).decode("utf-8", "surrogatepass")
    dn, created = directory.ensure_entry(name, domain_name)
    carried = False
    if password and created:
        try:
            directory.set_entry_password(dn, password)
        except BaseException:
            directory.delete_entry(dn)
            raise
        carried = True
    elif password:
        log.warning("migrate: %s@%s maps to the existing entry %s, which keeps its own password", name, domain_name, dn)
    with db.write() as session:
        credential = session.get(Credential, mailbox_id)
        if credential is not None:
            session.delete(credential)
        box = session.get(Mailbox, mailbox_id)
        if box is not None:
            box.has_user = True
        session.flush()
        remaining = int(session.scalar(select(func.count(Credential.mailbox_id))) or 0)
        switched = remaining == 0
        if switched:
            Settings.put(session, "auth", "directory")
    log.warning("migrated %s@%s to the directory entry %s%s", name, domain_name, dn,
                "; the server now uses the directory method" if switched else f" ({remaining} mailboxes to go)")
    return Migration(address=f"{name}@{domain_name}", entry=dn, created=created, password_carried=carried,
                     remaining=remaining, switched=switched)
