"""TLS for every logon (``require_tls_logon``) and trusted networks (``trusted_networks``): outside
TLS no logon at all, APOP, CRAM-MD5, SCRAM and NTLM included, and CAPA/EHLO advertise only what
is accepted; a trusted network may log on in plaintext (Dovecot's login_trusted_networks)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import poplib
import re
import smtplib

import pytest

from core.auth.policy import LogonRules
from core.errors import Invalid
from core.parsing import in_networks, parse_networks
from tests.support import ServiceProcess, unverified_tls

ALICE = "alice@example.com"
PASSWORD = "correct horse 7"
TLS_REQUIRED = b"-ERR [AUTH] Logons are refused on an unencrypted connection"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    service = ServiceProcess(tmp_path_factory.mktemp("tls-logon") / "data").start()
    service.add_mailbox(ALICE, PASSWORD)
    service.call("settings.set", name="throttle_delay_ms", value=0)
    yield service
    service.stop()


@pytest.fixture
def rules(svc: ServiceProcess):
    """Each test starts from SPA required, TLS not required for every logon, nothing trusted."""
    def put(**values: object) -> None:
        for name, value in values.items():
            svc.call("settings.set", name=name, value=value)
    put(sparequired=True, require_tls_logon=False, trusted_networks="")
    yield put
    put(sparequired=True, require_tls_logon=False, trusted_networks="")


def pop3(svc: ServiceProcess) -> poplib.POP3:
    return poplib.POP3("127.0.0.1", svc.ports["pop3"], timeout=10)


def capabilities(client: poplib.POP3) -> dict[str, list[str]]:
    return {k: list(v) for k, v in client.capa().items()}


def apop_line(client: poplib.POP3) -> bytes:
    stamp = re.search(rb"<[^>]+>", client.welcome).group(0)
    digest = hashlib.md5(stamp + PASSWORD.encode()).hexdigest()
    client._putcmd(f"APOP {ALICE} {digest}")
    return client._getline()[0]


def cram_md5_line(client: poplib.POP3) -> bytes:
    client._putcmd("AUTH CRAM-MD5")
    first = client._getline()[0]
    if not first.startswith(b"+ "):
        return first
    challenge = base64.b64decode(first[2:])
    digest = hmac.new(PASSWORD.encode(), challenge, hashlib.md5).hexdigest()
    client._putcmd(base64.b64encode(f"{ALICE} {digest}".encode()).decode())
    return client._getline()[0]


def ehlo_auth(client: smtplib.SMTP) -> set[str]:
    client.ehlo("laptop")
    return set(client.esmtp_features.get("auth", "").split())


def test_spa_alone_keeps_challenge_response_in_the_clear(svc: ServiceProcess, rules) -> None:
    client = pop3(svc)
    caps = capabilities(client)
    assert "USER" not in caps and set(caps["SASL"]) == {"SCRAM-SHA-256", "CRAM-MD5", "NTLM"}
    assert apop_line(client).startswith(b"+OK")
    client.quit()


def test_tls_required_for_every_logon_refuses_all_logons_in_the_clear(svc: ServiceProcess, rules) -> None:
    rules(require_tls_logon=True)
    client = pop3(svc)
    caps = capabilities(client)
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    assert apop_line(client).startswith(TLS_REQUIRED)
    assert cram_md5_line(client).startswith(TLS_REQUIRED)
    client._putcmd("AUTH SCRAM-SHA-256")
    assert client._getline()[0].startswith(TLS_REQUIRED)
    client._putcmd(f"USER {ALICE}")
    assert client._getline()[0].startswith(TLS_REQUIRED)
    client._putcmd("AUTH")                      # the mechanism list is empty too
    assert client._getline()[0].startswith(b"+OK") and client._getline()[0] == b"."
    # After STLS every mechanism is offered and accepted
    client.stls(context=unverified_tls())
    caps = capabilities(client)
    assert "USER" in caps and {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"} <= set(caps["SASL"])
    assert cram_md5_line(client).startswith(b"+OK")
    client.quit()
    # Port 995 (implicit TLS)
    client = poplib.POP3_SSL("127.0.0.1", svc.ports["pop3s"], timeout=10, context=unverified_tls())
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK")
    client.quit()


def test_tls_required_for_every_logon_in_smtp(svc: ServiceProcess, rules) -> None:
    rules(require_tls_logon=True)
    with smtplib.SMTP("127.0.0.1", svc.ports["submission"], timeout=10) as client:
        assert ehlo_auth(client) == set()
        assert client.docmd("AUTH", "CRAM-MD5")[0] == 538
        assert client.docmd("AUTH", "PLAIN")[0] == 538
        client.starttls(context=unverified_tls())
        assert {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"} <= ehlo_auth(client)
        client.login(ALICE, PASSWORD)
    rules(require_tls_logon=False)
    with smtplib.SMTP("127.0.0.1", svc.ports["submission"], timeout=10) as client:
        assert ehlo_auth(client) == {"CRAM-MD5", "SCRAM-SHA-256", "NTLM"}   # SPA alone


def test_a_trusted_network_may_log_on_in_plaintext(svc: ServiceProcess, rules) -> None:
    rules(require_tls_logon=True, trusted_networks="127.0.0.1")
    client = pop3(svc)
    caps = capabilities(client)
    assert "USER" in caps and "PLAIN" in caps["SASL"]
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK")
    client.quit()
    with smtplib.SMTP("127.0.0.1", svc.ports["submission"], timeout=10) as client:
        assert {"PLAIN", "LOGIN"} <= ehlo_auth(client)
        client.login(ALICE, PASSWORD)
    rules(trusted_networks="10.0.0.0/8")        # another network: the loopback client is not trusted
    client = pop3(svc)
    assert "SASL" not in capabilities(client)
    client.quit()


def test_trusted_networks_are_checked_when_set(svc: ServiceProcess, rules) -> None:
    with pytest.raises(Exception, match="not an address or network"):
        svc.call("settings.set", name="trusted_networks", value="10.0.0.0/8, office")
    assert svc.call("settings.get", name="trusted_networks") == {"trusted_networks": ""}


class _Provider:
    def mechanisms(self, *, tls: bool, spa_required: bool) -> list[str]:
        return ["CRAM-MD5"] + (["PLAIN"] if tls or not spa_required else [])


@pytest.mark.parametrize("spa,require_tls,tls,trusted,plaintext,mechanisms", [
    (False, False, False, "", True, ["CRAM-MD5", "PLAIN"]),
    (True, False, False, "", False, ["CRAM-MD5"]),
    (True, True, False, "", False, []),
    (False, True, False, "", False, []),
    (True, True, True, "", True, ["CRAM-MD5", "PLAIN"]),
    (True, True, False, "192.0.2.0/24", True, ["CRAM-MD5", "PLAIN"]),
    (True, True, False, "198.51.100.1", False, []),
], ids=["open", "spa", "spa+tls-required", "tls-required", "inside-tls", "trusted", "not-trusted"])
def test_logon_rules(spa, require_tls, tls, trusted, plaintext, mechanisms) -> None:
    values = {"sparequired": spa, "require_tls_logon": require_tls, "trusted_networks": trusted}
    found = LogonRules.for_connection(values.__getitem__, tls=tls, address="::ffff:192.0.2.9")
    assert found.plaintext is plaintext
    assert found.mechanisms(_Provider()) == mechanisms
    assert found.any_logon is bool(mechanisms)


def test_networks_parse_and_match() -> None:
    nets = parse_networks("127.0.0.1; 10.0.0.0/8 ::1")
    assert in_networks("10.2.3.4", nets) and in_networks("::1", nets) and in_networks("::ffff:127.0.0.1", nets)
    assert not in_networks("11.0.0.1", nets) and not in_networks("not an ip", nets)
    with pytest.raises(Invalid, match="'office' is not an address"):
        parse_networks("office")
