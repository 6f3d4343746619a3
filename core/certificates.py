"""TLS certificates as values: read a PEM certificate and key, check they belong together and are
current, describe them for people (subject, names, expiry), make the self-signed one a new service
starts with. Pure: no sockets, no files written.

The service uses it to validate an import (``tls.import``), the setup wizard to show what the
chosen PEM files contain before anything is sent.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.errors import Invalid

EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CertificateSummary:
    """What a person needs to know about a certificate."""

    subject: str
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime
    self_signed: bool

    def days_left(self, now: dt.datetime | None = None) -> int:
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).days

    def expires_soon(self, now: dt.datetime | None = None) -> bool:
        return self.days_left(now) <= EXPIRY_WARNING_DAYS

    def as_dict(self) -> dict:
        return {"subject": self.subject, "names": list(self.names), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "self_signed": self.self_signed,
                "days_left": self.days_left(), "expires_soon": self.expires_soon()}


def self_signed(hostname: str, *, days: int = 825, extra_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
                rsa: bool = False) -> tuple[bytes, bytes]:
    """A self-signed server certificate and its PKCS#8 key (PEM) for ``hostname`` and ``extra_names``.

    It is a leaf, not a CA (RFC 5280 §4.2.1.9 BasicConstraints CA:FALSE, critical), so a client
    that trusts it trusts nothing it could sign; KeyUsage digitalSignature (plus keyEncipherment
    for RSA, §4.2.1.3) and ExtendedKeyUsage serverAuth (§4.2.1.12) say what it is for; the host
    names are subjectAltNames (RFC 6125 §6.4.4: clients ignore the CN when SANs exist). 825 days:
    the most clients such as Apple's accept for a server certificate."""
    key = rsa_keys.generate_private_key(65537, 2048) if rsa else ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in (hostname, *extra_names):
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
        except ValueError:
            entry = x509.DNSName(name)
        if entry not in names:
            names.append(entry)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=rsa, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def summarize(cert_pem: bytes) -> CertificateSummary:
    """Subject, names and validity of the first certificate in ``cert_pem``."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise Invalid("This is not a PEM certificate (it should begin with '-----BEGIN CERTIFICATE-----').") \
            from None
    try:
        names = tuple(str(n.value) for n in
                      cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        names = ()
    return CertificateSummary(subject=cert.subject.rfc4514_string() or "(empty subject)", names=names,
                              not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                              self_signed=cert.issuer == cert.subject)


def check_pair(cert_pem: bytes, key_pem: bytes, *, now: dt.datetime | None = None) -> CertificateSummary:
    """Validate a certificate and its private key for a server: readable, matching, current.

    Raises ``Invalid`` with a sentence a person can act on.
    """
    summary = summarize(cert_pem)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise Invalid("The private key is protected by a passphrase; the service needs it without one "
                      "(openssl pkey -in key.pem -out plain.pem).") from None
    except ValueError:
        raise Invalid("This is not a PEM private key (it should begin with '-----BEGIN PRIVATE KEY-----' "
                      "or '-----BEGIN RSA/EC PRIVATE KEY-----').") from None
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise Invalid("The private key does not belong to this certificate; choose the key file that was "
                      "made together with it.")
    now = now or dt.datetime.now(dt.UTC)
    if summary.not_after <= now:
        raise Invalid(f"The certificate expired on {summary.not_after:%Y-%m-%d}; renew it first.")
    if summary.not_before > now:
        raise Invalid(f"The certificate is not valid before {summary.not_before:%Y-%m-%d}.")
    return summary


def describe(summary: CertificateSummary) -> str:
    """One paragraph for a wizard page or a status view."""
    names = ", ".join(summary.names) or "none"
    days = summary.days_left()
    when = f"{summary.not_after:%Y-%m-%d} (in {days} days)" if days >= 0 else f"{summary.not_after:%Y-%m-%d} (expired)"
    kind = "self-signed" if summary.self_signed else "issued by a certificate authority"
    return f"Subject: {summary.subject}\nNames: {names}\nExpires: {when}\nKind: {kind}"
