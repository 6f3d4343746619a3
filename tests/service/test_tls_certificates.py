"""TLS certificates through the admin channel: import (checked: matching key, not expired; key file
0600), generate, expiry in server.info with the 30-day warning, a renewed certificate served
without a restart on POP3 (995) and SMTP (STARTTLS), and TLS 1.2 as the floor on every listener."""
from __future__ import annotations

import datetime as dt
import poplib
import smtplib
import socket
import ssl
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.errors import MailError
from gui.views.status_view import StatusView
from tests.support import unverified_tls as unverified


def make_pair(cn: str, *, days: int = 90) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def served_cn_pop3s(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with unverified().wrap_socket(raw) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def served_cn_starttls(port: int) -> str:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.starttls(context=unverified())
        der = smtp.sock.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_import_checks_the_pair_and_is_served_without_a_restart(service):
    cert, key = make_pair("imported.example.com")
    other_cert, _ = make_pair("other.example.com")
    with pytest.raises(MailError, match="does not belong to this certificate"):
        service.call("tls.import", cert=other_cert, key=key)
    old_cert, old_key = make_pair("old.example.com", days=-2)
    with pytest.raises(MailError, match="expired"):
        service.call("tls.import", cert=old_cert, key=old_key)
    with pytest.raises(MailError, match="not a PEM certificate"):
        service.call("tls.import", cert="hello", key=key)

    result = service.call("tls.import", cert=cert, key=key)
    assert result["subject"] == "CN=imported.example.com" and not result["expires_soon"]
    key_file = service.data_dir / "tls" / "server.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert served_cn_pop3s(service.ports["pop3s"]) == "CN=imported.example.com"
    assert served_cn_starttls(service.ports["submission"]) == "CN=imported.example.com"
    audit = service.call("audit.list", limit=5)["items"]
    assert "PRIVATE KEY" not in str(audit)                        # the key is a secret parameter


def test_generate_and_the_expiry_warning_in_server_info(service):
    info = service.call("tls.generate", hostname="fresh.example.com")
    assert info["names"][0] == "fresh.example.com" and info["days_left"] > 700
    assert served_cn_pop3s(service.ports["pop3s"]) == "CN=fresh.example.com"
    with pytest.raises(MailError, match="not a host name"):
        service.call("tls.generate", hostname="bad host")
    cert, key = make_pair("soon.example.com", days=10)
    service.call("tls.import", cert=cert, key=key)
    tls = service.call("server.info")["tls"]
    assert tls["expires_soon"] and 8 <= tls["days_left"] <= 10
    assert "expires in" in service.output() and "renew it" in service.output()


def test_a_renewed_file_on_disk_is_picked_up_by_new_connections(service):
    from service.tls import write_pair
    cert, key = make_pair("renewed-on-disk.example.com")
    write_pair(service.data_dir / "tls", cert.encode(), key.encode())
    # The next handshake on 995 checks the files (mtime) and loads the renewed pair in place.
    assert served_cn_pop3s(service.ports["pop3s"]) == "CN=renewed-on-disk.example.com"
    assert served_cn_starttls(service.ports["submission"]) == "CN=renewed-on-disk.example.com"


def test_tls_1_1_is_refused_on_every_tls_listener(service):
    old = unverified(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    for port in (service.ports["pop3s"], service.ports["smtps"]):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                old.wrap_socket(raw).do_handshake()
    modern = unverified(minimum_version=ssl.TLSVersion.TLSv1_2)
    client = poplib.POP3_SSL("127.0.0.1", service.ports["pop3s"], timeout=10, context=modern)
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    client.quit()


def test_the_status_view_warns_30_days_ahead(qtbot):
    from tests.fake_service import FakeServiceClient, demo_service
    view = StatusView(FakeServiceClient(demo_service()))
    qtbot.addWidget(view)
    view.set_certificate({"subject": "CN=mail", "not_after": "2030-01-01T00:00:00", "days_left": 900,
                          "expires_soon": False, "self_signed": True})
    assert "valid until 2030-01-01" in view.certificate_label.text()
    assert "color" not in view.certificate_label.styleSheet()
    view.set_certificate({"subject": "CN=mail", "not_after": "2026-01-20T00:00:00", "days_left": 12,
                          "expires_soon": True})
    assert "in 12 days" in view.certificate_label.text() and "#a4262c" in view.certificate_label.styleSheet()
    view.set_certificate({"subject": "CN=mail", "not_after": "2025-01-01T00:00:00", "days_left": -3,
                          "expires_soon": True})
    assert "expired" in view.certificate_label.text()


def test_the_status_view_shows_a_server_key_problem(qtbot):
    from tests.fake_service import FakeServiceClient, demo_service
    view = StatusView(FakeServiceClient(demo_service()))
    qtbot.addWidget(view)
    view.set_key_problem("")
    assert not view.key_label.isVisibleTo(view)
    view.set_key_problem("This service's server key is not the key ... Copy server.key from the first node.")
    assert view.key_label.isVisibleTo(view) and view.key_label.text().startswith("Server key: This service's")
    assert "#a4262c" in view.key_label.styleSheet()
