"""TLS for every listener: a self-signed certificate made on first start, or the configured PEM
files; TLS 1.2 minimum. A renewed certificate is picked up without a restart (by file mtime)."""
from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from core.certificates import EXPIRY_WARNING_DAYS, self_signed, summarize

log = logging.getLogger(__name__)


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str, *, days: int = 825) -> None:
    """Write a self-signed leaf certificate for ``hostname`` (and localhost) with a 0600 key file."""
    cert_pem, key_bytes = self_signed(hostname, days=days)
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert_pem)
    log.warning("made a self-signed TLS certificate for %s at %s", hostname, cert_path)


def certificate_info(cert_path: Path) -> dict:
    """Subject, names, expiry (and whether it is within the 30-day warning) of a PEM certificate."""
    return summarize(Path(cert_path).read_bytes()).as_dict()


def _server_context() -> ssl.SSLContext:
    """TLS 1.2 minimum and forward-secret AEAD ciphers only, for every listener (POP3, SMTP, admin)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS")
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    return ctx


def write_pair(tls_dir: Path, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    """Store a certificate and its key as ``tls_dir/server.crt`` and ``server.key`` (key 0600),
    each replaced atomically, the key first so a reload never pairs a new certificate with an old key
    for longer than the two renames."""
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / "server.crt", tls_dir / "server.key"
    for path, data, mode in ((key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)):
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return cert_path, key_path


class TlsMaterial:
    """Holds the server SSLContext; reloads it in place when the certificate files change.

    Reloading in place matters: SMTP keeps the context it was given for STARTTLS, so a new
    context object would never reach it; the same object with a new chain reaches everyone.

    With ``load=False`` nothing is read until ``configure``; until a pair loads, ``available`` is
    False and the service runs its plaintext listeners only (bad PEM files at start).
    """

    def __init__(self, data_dir: Path, hostname: str, cert: str = "", key: str = "", *, load: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.hostname = hostname
        self._context: ssl.SSLContext | None = None
        self.cert_path = self.key_path = Path()
        self._stamp: tuple[float, float] = (0, 0)
        if load:
            self.configure(cert, key)

    @property
    def available(self) -> bool:
        """Has a certificate been loaded (so TLS can be offered)?"""
        return self._context is not None

    def configure(self, cert: str, key: str) -> None:
        """Use the PEM files ``cert`` and ``key``, or (both empty) DATA_DIR/tls, made self-signed if
        missing. Raises if the pair cannot be used; a pair loaded before stays in force."""
        if cert and key:
            cert_path, key_path = Path(cert), Path(key)
        else:
            tls_dir = self.data_dir / "tls"
            tls_dir.mkdir(mode=0o700, exist_ok=True)
            cert_path, key_path = tls_dir / "server.crt", tls_dir / "server.key"
            if not (cert_path.exists() and key_path.exists()):
                generate_self_signed(cert_path, key_path, self.hostname)
        self._load(cert_path, key_path)  # fail now, clearly, if the files are unusable
        self.cert_path, self.key_path = cert_path, key_path

    def _mtimes(self) -> tuple[float, float]:
        return (self.cert_path.stat().st_mtime_ns, self.key_path.stat().st_mtime_ns)

    def _load(self, cert_path: Path, key_path: Path) -> None:
        _server_context().load_cert_chain(cert_path, key_path)   # a trial: a bad pair leaves the live one alone
        if self._context is None:
            self._context = _server_context()
        self._context.load_cert_chain(cert_path, key_path)
        self._stamp = (cert_path.stat().st_mtime_ns, key_path.stat().st_mtime_ns)
        self.warn_if_expiring(cert_path)

    def context(self) -> ssl.SSLContext:
        """The server context; a renewed certificate on disk is loaded into it first."""
        self.refresh()
        assert self._context is not None
        return self._context

    def refresh(self) -> bool:
        """Reload if the files changed since the last load; True when a new certificate was loaded."""
        if self._context is None:
            return False
        try:
            stamp = self._mtimes()
        except OSError as exc:
            log.error("TLS certificate %s: %s (keeping the loaded one)", self.cert_path, exc)
            return False
        if stamp == self._stamp:
            return False
        try:
            self._load(self.cert_path, self.key_path)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("the renewed TLS certificate %s cannot be used: %s (keeping the loaded one)",
                      self.cert_path, exc)
            self._stamp = stamp   # say it once per change, not on every connection
            return False
        log.warning("reloaded the TLS certificate from %s", self.cert_path)
        return True

    @staticmethod
    def warn_if_expiring(cert_path: Path) -> None:
        try:
            summary = summarize(Path(cert_path).read_bytes())
        except Exception:  # noqa: BLE001 - reported by whoever reads the certificate next
            return
        days = summary.days_left()
        if days < 0:
            log.error("the TLS certificate %s expired on %s; renew it", cert_path, f"{summary.not_after:%Y-%m-%d}")
        elif days <= EXPIRY_WARNING_DAYS:
            log.warning("the TLS certificate %s expires in %d days (%s); renew it", cert_path, days,
                        f"{summary.not_after:%Y-%m-%d}")
