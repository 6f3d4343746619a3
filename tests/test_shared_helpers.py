"""The real-service and slapd helpers exist once, in tools/ (the screenshot script cannot import tests):
the tests' ServiceProcess and Slapd are those helpers with the tests' choices, and the pictures keep
their names."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from core.catalog import MAIL_LISTENERS
from tests import slapd, support
from tools import directory_server, real_service


def test_wait_until_returns_the_first_truthy_value_and_pauses_between_tries():
    answers, pauses = iter([0, None, "ready"]), []
    assert real_service.wait_until(lambda: next(answers), "it", pause=pauses.append, interval=0.25) == "ready"
    assert pauses == [0.25, 0.25]


@pytest.mark.parametrize("wait, error", [
    (lambda: real_service.wait_until(lambda: False, "the moon", 0.05, 0.01), TimeoutError),
    (lambda: support.wait_for(lambda: False, 0.05, 0.01, what="the moon"), AssertionError),
], ids=["tools: TimeoutError", "tests: a test failure"])
def test_a_wait_that_runs_out_names_what_it_waited_for(wait, error):
    with pytest.raises(error, match="timed out after 0.05 s waiting for the moon"):
        wait()


def test_the_tests_service_is_the_tools_service_on_free_ports_and_the_tests_database(monkeypatch, tmp_path):
    assert issubclass(support.ServiceProcess, real_service.RealService)
    assert support.LISTENERS == tuple(spec.name for spec in MAIL_LISTENERS)
    monkeypatch.setattr(real_service, "port_free", lambda port, host="127.0.0.1": True)
    tool = real_service.RealService(tmp_path / "a")
    assert tool.ports == {spec.name: spec.unprivileged_port for spec in MAIL_LISTENERS}   # the pictures' ports
    test = support.ServiceProcess(tmp_path / "b", ports={"smtps": 0}, extra_args=("--user", "nobody"),
                                  db_url="sqlite:////elsewhere.db")
    assert test.ports["smtps"] == 0 and test.ports["pop3"] != 1110
    assert test.command()[-4:] == ["--db-url", "sqlite:////elsewhere.db", "--user", "nobody"]
    assert test.log_path == tmp_path / "b-stdout.log"          # beside the data directory, not in it
    assert test.stop() is None                                  # never started: nothing to stop or check


def test_a_service_that_exits_at_once_fails_start_with_its_output(tmp_path):
    service = real_service.RealService(tmp_path / "data", extra_args=("--no-such-option",))
    with pytest.raises(RuntimeError, match="(?s)the service exited with 2:.*no-such-option"):
        service.start(timeout=60)
    assert service.stop() == 2


def test_the_pictures_directory_and_the_tests_directory_are_one_server_with_two_trees():
    assert issubclass(slapd.Slapd, directory_server.DirectoryServer)
    assert (directory_server.SUFFIX, directory_server.SERVICE_DN) == \
        ("dc=contoso,dc=com", "cn=pop3svc,ou=Services,dc=contoso,dc=com")   # as the wizard pictures show
    assert (slapd.SUFFIX, slapd.ROOT_DN, slapd.SERVICE_DN, slapd.READER_DN, slapd.PEOPLE) == \
        ("dc=example,dc=test", "cn=admin,dc=example,dc=test", "cn=pop3svc,ou=services,dc=example,dc=test",
         "cn=reader,ou=services,dc=example,dc=test", "ou=people,dc=example,dc=test")
    seed = directory_server.CONTOSO.seed()
    assert [line for line in seed.splitlines() if line.startswith("dn: ")] == [
        "dn: dc=contoso,dc=com", "dn: ou=people,dc=contoso,dc=com", "dn: ou=Services,dc=contoso,dc=com",
        "dn: cn=pop3svc,ou=Services,dc=contoso,dc=com"]
    assert "dc: contoso\no: Contoso\n" in seed


def test_the_certificates_are_a_ca_and_a_loopback_server_certificate_it_signed(tmp_path: Path):
    ca, cert, key = directory_server.make_certificates(tmp_path, "Example CA")
    assert key.stat().st_mode & 0o777 == 0o600
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(cert)], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "Issuer: CN = Example CA" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text
