"""TLS for every listener: a self-signed certificate made on first start, or the configured PEM
files; TLS 1.2 minimum. A renewed certificate is picked up without a restart (by file mtime)."""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from pathlib import Path

log = logging.getLogger(__name__)


def generate_self_signed(cert_path: Path, key_path: Path, hostname: str, *, days: int = 825) -> None:
    """Write a self-signed certificate for ``hostname`` (and localhost) with a 0600 key file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_key, key_path)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    log.warning("made a self-signed TLS certificate for %s at %s", hostname, cert_path)


def certificate_info(cert_path: Path) -> dict:
    """Subject, names and expiry of a PEM certificate, for the console and ``winpop``."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    try:
        names = [str(n.value) for n in cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value]
    except x509.ExtensionNotFound:
        names = []
    return {"subject": cert.subject.rfc4514_string(), "names": names,
            "not_after": cert.not_valid_after_utc.isoformat(),
            "self_signed": cert.issuer == cert.subject}


class TlsMaterial:
    """Holds the server SSLContext; rebuilds it when the certificate files change."""

    def __init__(self, data_dir: Path, hostname: str, cert: str = "", key: str = "") -> None:
        self.data_dir = Path(data_dir)
        self.hostname = hostname
        self.configure(cert, key)

    def configure(self, cert: str, key: str) -> None:
        if cert and key:
            self.cert_path, self.key_path = Path(cert), Path(key)
        else:
            tls_dir = self.data_dir / "tls"
            tls_dir.mkdir(mode=0o700, exist_ok=True)
            self.cert_path, self.key_path = tls_dir / "server.crt", tls_dir / "server.key"
            if not (self.cert_path.exists() and self.key_path.exists()):
                generate_self_signed(self.cert_path, self.key_path, self.hostname)
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple[float, float] | None = None
        self.context()  # fail now, clearly, if the files are unusable

    def _mtimes(self) -> tuple[float, float]:
        return (self.cert_path.stat().st_mtime, self.key_path.stat().st_mtime)

    def context(self) -> ssl.SSLContext:
        """The current server context (reloaded if a renewed certificate was written)."""
        stamp = self._mtimes()
        if self._context is None or stamp != self._stamp:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS")
            ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
            ctx.load_cert_chain(self.cert_path, self.key_path)
            if self._context is not None:
                log.warning("reloaded the TLS certificate from %s", self.cert_path)
            self._context, self._stamp = ctx, stamp
        return self._context
