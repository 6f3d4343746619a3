"""The server key: 32 random bytes that encrypt the stored password-equivalents (DESIGN §6).

It lives in the system keyring when a real, secure one answers, else in ``<data dir>/server.key``
(mode 0600, owned by the service's user). Which one is used is an explicit choice made once by
``choose_keystore()`` and stored with the settings; a keyring that later fails is an error, never
a silent switch to another store, and there is no plaintext keyring fallback.
"""
from __future__ import annotations

import base64
import logging
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import Invalid, Unavailable
from core.keyrings import is_secure_backend as _is_secure_backend

log = logging.getLogger(__name__)

KEYRING_SERVICE = "pop3-service"
KEY_FILE_NAME = "server.key"
KEY_SIZE = 32
KEYSTORES = ("keyring", "keyfile")

_BLOB_VERSION = 1
_NONCE_SIZE = 12
_TAG_SIZE = 16


# --- choosing the store ---------------------------------------------------------------------

def choose_keystore() -> str:
    """'keyring' if the current keyring backend is secure and a probe round trip works, else 'keyfile'."""
    try:
        # Optional at run time: a machine without a usable keyring package keeps a key file instead.
        import keyring  # noqa: PLC0415

        backend = keyring.get_keyring()
    except Exception as exc:  # noqa: BLE001 - no usable keyring at all
        log.info("no system keyring (%s); the server key will be kept in a key file", exc)
        return "keyfile"
    if not _is_secure_backend(backend):
        log.info("keyring backend %r is not a secure store; the server key will be kept in a key file", backend)
        return "keyfile"
    probe_name = f"probe-{secrets.token_hex(8)}"
    probe_value = secrets.token_urlsafe(16)
    try:
        backend.set_password(KEYRING_SERVICE, probe_name, probe_value)
        try:
            ok = backend.get_password(KEYRING_SERVICE, probe_name) == probe_value
        finally:
            try:
                backend.delete_password(KEYRING_SERVICE, probe_name)
            except Exception:  # noqa: BLE001 - leaving a probe behind is harmless
                pass
    except Exception as exc:  # noqa: BLE001
        log.info("keyring backend %r failed a probe (%s); using a key file", backend, exc)
        return "keyfile"
    return "keyring" if ok else "keyfile"


def keyring_entry_name(data_dir: Path) -> str:
    """The keyring entry of the server key for ``data_dir`` (several services may share a keyring)."""
    return f"server-key:{Path(data_dir).expanduser().resolve()}"


# --- the key file ---------------------------------------------------------------------------

def _check_key_file(path: Path) -> None:
    """Refuse a key file that others can read or that belongs to someone else."""
    try:
        info = path.stat()
    except OSError as exc:
        raise Unavailable(f"The server key {path} cannot be read: {exc.strerror}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise Unavailable(f"The server key {path} is not a regular file; remove it or restore the key file.")
    if info.st_mode & 0o077:
        raise Unavailable(
            f"The server key {path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it must be readable by the service only. Run: chmod 600 {path}"
        )
    if info.st_uid not in (os.geteuid(), 0, _directory_owner(path)):
        raise Unavailable(
            f"The server key {path} belongs to user id {info.st_uid}, not to the service's user "
            f"({os.geteuid()}); give it to the service's user (chown) or restore the right key file."
        )


def _directory_owner(path: Path) -> int:
    """The owner of the folder holding the key. `service --user USER` started as root gives the
    data directory, key included, to USER; the next root start reads that key before it drops to
    USER again. Trusting the folder's owner adds nothing: it can replace any file in the folder."""
    try:
        return path.parent.stat().st_uid
    except OSError:
        return 0


def _read_key_file(path: Path) -> bytes:
    _check_key_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Unavailable(f"The server key {path} cannot be read: {exc.strerror}.") from None
    if len(data) != KEY_SIZE:
        raise Unavailable(
            f"The server key {path} is damaged ({len(data)} bytes, expected {KEY_SIZE}); restore it from a backup."
        )
    return data


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_key_file(path: Path) -> bytes:
    """Write a new key: a private temp file (O_EXCL, 0600, fsync) hard-linked into place.

    The link fails if another process created the key first; then we use theirs. A crash leaves
    either no key file or a complete one, never a short one.
    """
    key = secrets.token_bytes(KEY_SIZE)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        view = memoryview(key)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return _read_key_file(path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)
    log.info("created a new server key in %s", path)
    return key


# --- the key --------------------------------------------------------------------------------

class ServerKey:
    """The AES-256-GCM key that encrypts the password-equivalents; ``aad`` ties a blob to its row."""

    def __init__(self, key: bytes, *, store: str = "memory", location: str = "") -> None:
        if len(key) != KEY_SIZE:
            raise Invalid(f"A server key has {KEY_SIZE} bytes, not {len(key)}.")
        self._aead = AESGCM(bytes(key))
        self.store = store
        self.location = location

    def __repr__(self) -> str:  # never show the key
        return f"ServerKey(store={self.store!r}, location={self.location!r})"

    @classmethod
    def generate(cls) -> ServerKey:
        """A fresh key held only in memory (tests, tools)."""
        return cls(secrets.token_bytes(KEY_SIZE))

    @classmethod
    def load(cls, data_dir: Path, store: str, *, create: bool) -> ServerKey:
        """Load the key for ``data_dir`` from ``store`` ('keyfile' or 'keyring'); make one if ``create``."""
        data_dir = Path(data_dir)
        if store == "keyfile":
            return cls._load_keyfile(data_dir, create=create)
        if store == "keyring":
            return cls._load_keyring(data_dir, create=create)
        raise Invalid(f"Unknown key store '{store}'; choose one of: {', '.join(KEYSTORES)}.")

    @classmethod
    def _load_keyfile(cls, data_dir: Path, *, create: bool) -> ServerKey:
        path = data_dir / KEY_FILE_NAME
        if path.exists() or path.is_symlink():
            return cls(_read_key_file(path), store="keyfile", location=str(path))
        if not create:
            raise Unavailable(
                f"The server key {path} is missing, so stored passwords for APOP, CRAM-MD5 and NTLM cannot "
                "be decrypted. Restore the key file from a backup, or reset the mailbox passwords."
            )
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            key = _create_key_file(path)
        except OSError as exc:
            raise Unavailable(f"The server key cannot be created in {data_dir}: {exc.strerror}.") from None
        return cls(key, store="keyfile", location=str(path))

    @classmethod
    def _load_keyring(cls, data_dir: Path, *, create: bool) -> ServerKey:
        entry = keyring_entry_name(data_dir)
        where = f"keyring service '{KEYRING_SERVICE}', entry '{entry}'"
        try:
            # Optional at run time: a keyring package that cannot load is reported like any keyring failure.
            import keyring  # noqa: PLC0415

            backend = keyring.get_keyring()
            if not _is_secure_backend(backend):
                kind = f"{type(backend).__module__}.{type(backend).__name__}"
                raise RuntimeError(f"the backend {kind} is not a secure store")
            stored = backend.get_password(KEYRING_SERVICE, entry)
            if stored is None and create:
                backend.set_password(KEYRING_SERVICE, entry, base64.b64encode(secrets.token_bytes(KEY_SIZE)).decode())
                stored = backend.get_password(KEYRING_SERVICE, entry)  # read back what the keyring kept
                log.info("created a new server key in the %s", where)
        except Exception as exc:  # noqa: BLE001 - every keyring failure is the same refusal
            raise Unavailable(
                f"The system keyring failed ({type(exc).__name__}: {exc}); the server key in the {where} "
                "cannot be used. Unlock or start the keyring and try again."
            ) from None
        if stored is None:
            raise Unavailable(
                f"The server key is missing from the {where}. Restore it, or reset the mailbox passwords."
            )
        try:
            key = base64.b64decode(stored, validate=True)
        except (ValueError, TypeError):
            key = b""
        if len(key) != KEY_SIZE:
            raise Unavailable(f"The server key in the {where} is damaged; restore it from a backup.")
        return cls(key, store="keyring", location=where)

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """version byte + 12-byte random nonce + AES-256-GCM(ciphertext + tag); ``aad`` is authenticated."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        header = bytes([_BLOB_VERSION])
        return header + nonce + self._aead.encrypt(nonce, bytes(plaintext), header + bytes(aad))

    def decrypt(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext of ``blob``, or Unavailable if it is damaged, for another row, or another key."""
        blob = bytes(blob)
        if len(blob) < 1 + _NONCE_SIZE + _TAG_SIZE or blob[0] != _BLOB_VERSION:
            raise Unavailable("A stored secret has an unknown format; reset the mailbox's password.")
        header, nonce, body = blob[:1], blob[1:1 + _NONCE_SIZE], blob[1 + _NONCE_SIZE:]
        try:
            return self._aead.decrypt(nonce, body, header + bytes(aad))
        except InvalidTag:
            raise Unavailable(
                "A stored secret cannot be decrypted: the server key does not match, or the row was "
                "altered or moved. Restore the right server key or reset the mailbox's password."
            ) from None
