"""The server's own name (issue 13 §4) in a running service: greeting, banner, certificate and
server.info carry the machine's name; a stored ``localhost`` from an earlier version is replaced."""
from __future__ import annotations

import poplib
import smtplib

import pytest
import sqlalchemy as sa
from cryptography import x509

from core.hostname import is_loopback_name, machine_name


@pytest.mark.skipif(is_loopback_name(machine_name()), reason="this machine is really named localhost")
def test_the_service_calls_itself_by_the_machines_name(service):
    name = machine_name()
    info = service.call("server.info")
    assert info["hostname"] == name
    pop = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=10)
    try:
        assert name in pop.getwelcome().decode()
    finally:
        pop.quit()
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=10) as smtp:
        code, banner = smtp.ehlo("client.test")
        assert code == 250 and banner.decode().startswith(name)
    cert = x509.load_pem_x509_certificate((service.data_dir / "tls" / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sans[0] == name


@pytest.mark.skipif(is_loopback_name(machine_name()), reason="this machine is really named localhost")
def test_a_stored_localhost_from_an_earlier_version_is_replaced(service):
    service.stop()
    engine = sa.create_engine(service.database_url())
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE settings SET value = :v WHERE name = 'hostname'"), {"v": '"localhost"'})
    engine.dispose()
    service.start()
    assert service.call("server.info")["hostname"] == machine_name()
    assert "loopback name" in service.output()
