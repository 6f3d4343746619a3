"""TLS certificates as values: read a PEM certificate and key, check they belong together and are
current, describe them for people (subject, names, expiry). Pure: no sockets, no files written.

The service uses it to validate an import (``tls.import``), the setup wizard to show what the
chosen PEM files contain before anything is sent.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

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
        now = now or dt.datetime.now(dt.timezone.utc)
        return (self.not_after - now).days

    def expires_soon(self, now: dt.datetime | None = None) -> bool:
        return self.days_left(now) <= EXPIRY_WARNING_DAYS

    def as_dict(self) -> dict:
        return {"subject": self.subject, "names": list(self.names), "not_before": self.not_before.isoformat(),
                "not_after": self.not_after.isoformat(), "self_signed": self.self_signed,
                "days_left": self.days_left(), "expires_soon": self.expires_soon()}


def summarize(cert_pem: bytes) -> CertificateSummary:
    """Subject, names and validity of the first certificate in ``cert_pem``."""
    from cryptography import x509

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
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

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
    now = now or dt.datetime.now(dt.timezone.utc)
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
