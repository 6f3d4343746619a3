"""NTLM end to end against pyspnego's client, the message layout, MD4, and mangled tokens."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest
import spnego
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.auth import Challenge, Failure, PasswordFileProvider, ServerKey, Success, create_mechanism
from core.auth.md4 import _md4_pure, md4
from core.auth.mechanisms import NtlmMechanism
from core.auth.ntlm import (
    AV_DNS_COMPUTER,
    AV_DNS_DOMAIN,
    AV_NB_COMPUTER,
    AV_NB_DOMAIN,
    AV_TIMESTAMP,
    NtlmIdentity,
    NtlmServer,
    _parse_av_pairs,
    netbios_names,
    nt_hash,
    ntowfv2,
)
from core.db import Database
from core.tables import Domain, Mailbox
from tests.support import db_url_for

TEST_ITERATIONS = 32
HOST = "mail.example.com"
ALICE, ALICE_PW = "alice@example.com", "Secret-1"


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ntlm")
    db = Database(db_url_for(Path(tmp) / "t.db"))
    db.upgrade()
    prov = PasswordFileProvider(db, ServerKey.generate(), scram_iterations=TEST_ITERATIONS)
    with db.write() as session:
        domain = Domain(name="example.com")
        session.add(domain)
        session.flush()
        mailbox = Mailbox(domain_id=domain.id, name="alice")
        session.add(mailbox)
        session.flush()
        prov.set_password(session, mailbox.id, ALICE_PW)
    yield prov
    db.dispose()


def ntlm_client(username: str, password: str):
    return spnego.client(username, password, protocol="ntlm")


def exchange(provider, username: str, password: str, *, initial: bool = False):
    """Run pyspnego's client against the server mechanism; return the final result."""
    client = ntlm_client(username, password)
    mechanism = create_mechanism("NTLM", provider, hostname=HOST)
    if initial:
        challenge = mechanism.start(client.step())
    else:
        assert mechanism.start(None) == Challenge(b"")
        challenge = mechanism.step(client.step())
    assert isinstance(challenge, Challenge)
    return mechanism.step(client.step(challenge.data))


# --- end to end -----------------------------------------------------------------------------

@pytest.mark.parametrize("initial", [False, True], ids=["empty-first-challenge", "negotiate-as-initial"])
@pytest.mark.parametrize("username", [ALICE, "ALICE@Example.com", "example.com\\alice", "ANY\\alice@example.com"],
                         ids=["upn", "upn-upper", "domain-backslash-user", "upn-with-netbios-domain"])
def test_ntlm_with_pyspnego_succeeds(provider, username, initial):
    result = exchange(provider, username, ALICE_PW, initial=initial)
    assert isinstance(result, Success), result
    assert result.principal.address == ALICE and result.final is None


@pytest.mark.parametrize("username", [ALICE, "example.com\\alice"])
def test_ntlm_wrong_password_fails(provider, username):
    result = exchange(provider, username, "Secret-2")
    assert isinstance(result, Failure) and not result.temporary
    assert result.login == ALICE


@pytest.mark.parametrize(
    ("username", "login"),
    [("ghost@example.com", "ghost@example.com"), ("OTHER\\alice", "alice@OTHER"), ("alice", "alice")],
    ids=["unknown-upn", "netbios-domain", "bare-name"],
)
def test_ntlm_unknown_user_fails(provider, username, login):
    result = exchange(provider, username, ALICE_PW)
    assert isinstance(result, Failure) and result.login == login


def test_ntlm_v1_responses_are_refused(provider, monkeypatch):
    monkeypatch.setenv("LM_COMPAT_LEVEL", "2")   # pyspnego then sends NTLMv1 (with ESS)
    result = exchange(provider, ALICE, ALICE_PW)
    assert isinstance(result, Failure) and "NTLMv1" in result.reason


def test_ntlm_mic_protects_the_messages(provider):
    """The workstation name is not covered by NTProofStr, only by the MIC: tampering must fail."""
    client = ntlm_client(ALICE, ALICE_PW)
    server = NtlmServer(HOST)
    authenticate = bytearray(client.step(server.negotiate(client.step())))
    identity = server.authenticate(bytes(authenticate))
    length, _max, offset = struct.unpack_from("<HHI", authenticate, 44)
    assert length and identity.workstation
    authenticate[offset] ^= 0x01
    tampered = NtlmServer(HOST, server_challenge=server._server_challenge)
    tampered._negotiate, tampered._challenge = server._negotiate, server._challenge
    tampered.authenticate(bytes(authenticate))
    assert server.verify(ALICE_PW)
    assert not tampered.verify(ALICE_PW)


def test_ntlm_secret_that_cannot_be_decrypted_is_temporary(provider):
    broken = PasswordFileProvider(provider._db, ServerKey.generate(), scram_iterations=TEST_ITERATIONS)
    result = exchange(broken, ALICE, ALICE_PW)
    assert isinstance(result, Failure) and result.temporary


# --- message layout -------------------------------------------------------------------------

def test_challenge_message_layout():
    server = NtlmServer("mail.example.com", server_challenge=b"\x01\x02\x03\x04\x05\x06\x07\x08")
    negotiate = ntlm_client(ALICE, ALICE_PW).step()
    challenge = server.negotiate(negotiate)
    assert challenge[:8] == b"NTLMSSP\x00" and struct.unpack_from("<I", challenge, 8)[0] == 2
    assert challenge[24:32] == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    name_len, _, name_off = struct.unpack_from("<HHI", challenge, 12)
    assert challenge[name_off:name_off + name_len].decode("utf-16-le") == "MAIL"
    info_len, _, info_off = struct.unpack_from("<HHI", challenge, 40)
    pairs = _parse_av_pairs(challenge[info_off:info_off + info_len])
    assert pairs[AV_NB_COMPUTER].decode("utf-16-le") == "MAIL"
    assert pairs[AV_NB_DOMAIN].decode("utf-16-le") == "EXAMPLE"
    assert pairs[AV_DNS_COMPUTER].decode("utf-16-le") == "mail.example.com"
    assert pairs[AV_DNS_DOMAIN].decode("utf-16-le") == "example.com"
    assert len(pairs[AV_TIMESTAMP]) == 8


@pytest.mark.parametrize(
    ("hostname", "names"),
    [
        ("mail.example.com", ("MAIL", "EXAMPLE", "mail.example.com", "example.com")),
        ("Server1.", ("SERVER1", "WORKGROUP", "server1", "server1")),
        ("", ("LOCALHOST", "WORKGROUP", "localhost", "localhost")),
        ("averyveryverylongname.corp.example", ("AVERYVERYVERYLO", "CORP", "averyveryverylongname.corp.example",
                                                "corp.example")),
    ],
)
def test_netbios_names(hostname, names):
    assert netbios_names(hostname) == names


def test_identity_to_logins():
    assert NtlmIdentity("alice@example.com", "", "").logins() == ["alice@example.com"]
    assert NtlmIdentity("alice@example.com", "CORP", "").logins() == ["alice@example.com"]
    assert NtlmIdentity("alice", "example.com", "").logins() == ["alice@example.com"]
    assert NtlmIdentity("alice", "", "").logins() == ["alice"]


# --- crypto building blocks -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "digest"),
    [
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
    ids=["empty", "a", "abc", "message-digest", "alphabet", "80-digits"],
)
def test_md4_rfc1320_vectors(data, digest):
    assert _md4_pure(data).hex() == digest
    assert md4(data).hex() == digest


def test_ms_nlmp_hashes():
    """MS-NLMP §4.2.1 / §4.2.4.1.1: User/Domain/Password test values."""
    assert nt_hash("Password").hex() == "a4f49c406510bdcab6824ee7c30fd852"
    assert ntowfv2("Password", "User", "Domain").hex() == "0c868a403bfd7a93a3001ef22ef02e3f"


# --- mangled tokens never raise -------------------------------------------------------------

def _valid_tokens():
    client = ntlm_client(ALICE, ALICE_PW)
    server = NtlmServer(HOST)
    negotiate = client.step()
    return negotiate, client.step(server.negotiate(negotiate))


NEGOTIATE, AUTHENTICATE = _valid_tokens()


@st.composite
def mangled(draw, token: bytes):
    data = bytearray(token)
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(negotiate=st.one_of(st.just(NEGOTIATE), mangled(NEGOTIATE)), authenticate=mangled(AUTHENTICATE))
def test_mangled_ntlm_tokens_never_raise(provider, negotiate, authenticate):
    mechanism = NtlmMechanism(provider, hostname=HOST)
    results = [mechanism.start(None), mechanism.step(negotiate), mechanism.step(authenticate)]
    for result in results:
        assert isinstance(result, (Challenge, Failure)), result
        if isinstance(result, Failure):
            assert "internal error" not in result.reason
