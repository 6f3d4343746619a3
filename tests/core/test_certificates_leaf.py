"""The self-signed certificate a new service starts with is a server leaf, not a CA: checked with
``cryptography`` and with ``openssl verify -purpose sslserver`` / ``openssl x509 -text``."""
from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from core.certificates import check_pair, self_signed

HOST = "mail.example.com"


@pytest.fixture(scope="module", params=[False, True], ids=["ec", "rsa"])
def pair(request) -> tuple[bytes, bytes, bool]:
    cert_pem, key_pem = self_signed(HOST, rsa=request.param)
    return cert_pem, key_pem, request.param


def test_it_is_a_leaf_for_tls_servers(pair) -> None:
    cert_pem, key_pem, rsa = pair
    cert = x509.load_pem_x509_certificate(cert_pem)
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert not usage.value.crl_sign and usage.value.key_encipherment is rsa
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [HOST, "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert check_pair(cert_pem, key_pem).names == (HOST, "localhost", "127.0.0.1")


def test_the_generated_files_are_a_leaf_the_service_can_serve(tmp_path: Path) -> None:
    from service.tls import generate_self_signed

    cert_path, key_path = tmp_path / "server.crt", tmp_path / "server.key"
    generate_self_signed(cert_path, key_path, HOST)
    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_path, key_path)   # the key matches, the listener can use it


def test_a_strict_client_that_trusts_it_completes_a_handshake(tmp_path: Path) -> None:
    """Python 3.13 clients verify with VERIFY_X509_STRICT by default: the leaf must pass it."""
    import socket
    import threading

    cert_pem, key_pem = self_signed("localhost")
    (tmp_path / "c.pem").write_bytes(cert_pem)
    (tmp_path / "k.pem").write_bytes(key_pem)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    errors: list[Exception] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except Exception as exc:   # reported below, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    with client.wrap_socket(socket.create_connection(listener.getsockname(), timeout=10),
                            server_hostname="localhost") as tls:
        assert tls.recv(2) == b"ok"
    thread.join(10)
    listener.close()
    assert errors == []


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_openssl_agrees(pair, tmp_path: Path) -> None:
    cert_pem, _key, rsa = pair
    path = tmp_path / "cert.pem"
    path.write_bytes(cert_pem)
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(path), "-purpose", "sslserver", "-verify_hostname",
                         HOST, str(path)], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip().endswith("OK"), ok.stdout + ok.stderr
    wrong = subprocess.run(["openssl", "verify", "-CAfile", str(path), "-purpose", "sslclient", str(path)],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode != 0 and "unsuitable certificate purpose" in wrong.stdout + wrong.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-text"], capture_output=True,
                          text=True, timeout=30, check=True).stdout
    assert "CA:FALSE" in text and "TLS Web Server Authentication" in text
    assert f"DNS:{HOST}, DNS:localhost, IP Address:127.0.0.1" in text
    assert ("Digital Signature, Key Encipherment" if rsa else "Digital Signature\n") in text
