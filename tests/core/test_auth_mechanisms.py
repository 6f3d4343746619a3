"""The SASL mechanisms (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256) and APOP against a real provider,
plus the guarantee that no client input makes a mechanism raise."""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.auth import (
    Challenge,
    Failure,
    PasswordFileProvider,
    ServerKey,
    Success,
    apop_digest_ok,
    check_apop,
    create_mechanism,
)
from core.auth.mechanisms import MAX_TOKEN, CramMd5Mechanism, ScramSha256Mechanism
from core.db import Database
from core.errors import Invalid
from core.tables import Domain, Mailbox
from tests.support import db_url_for

TEST_ITERATIONS = 32
HOST = "mail.example.com"
ALICE, ALICE_PW = "alice@example.com", "wonderland"
BOB, BOB_PW = "bob@example.com", "builder"
LOCKED, LOCKED_PW = "carol@example.com", "locked-out"
ALL_MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"]


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    """One database for the module (the mechanisms never write): alice, bob, locked carol, nopw."""
    tmp = tmp_path_factory.mktemp("auth")
    db = Database(db_url_for(Path(tmp) / "t.db"))
    db.upgrade()
    prov = PasswordFileProvider(db, ServerKey.generate(), mailroot=tmp / "mailroot", scram_iterations=TEST_ITERATIONS)
    with db.write() as session:
        domain = Domain(name="example.com")
        session.add(domain)
        session.flush()
        for address, password, locked in ((ALICE, ALICE_PW, False), (BOB, BOB_PW, False),
                                          (LOCKED, LOCKED_PW, True), ("nopw@example.com", None, False)):
            mailbox = Mailbox(domain_id=domain.id, name=address.split("@")[0], locked=locked)
            session.add(mailbox)
            session.flush()
            if password:
                prov.set_password(session, mailbox.id, password)
    yield prov
    db.dispose()


def run(mechanism, initial, *steps):
    """Drive an exchange: start(initial), then each step; return every result."""
    results = [mechanism.start(initial)]
    for data in steps:
        results.append(mechanism.step(data))
    return results


def assert_bad_credentials(result, login):
    assert isinstance(result, Failure), result
    assert result.login == login and not result.temporary


# --- create_mechanism -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_MECHANISMS + ["plain", "Scram-Sha-256", " ntlm "])
def test_create_mechanism_names(provider, name):
    mechanism = create_mechanism(name, provider, hostname=HOST)
    assert mechanism.name == name.strip().upper()
    assert mechanism.plaintext == (mechanism.name in ("PLAIN", "LOGIN"))


@pytest.mark.parametrize("name", ["GSSAPI", "DIGEST-MD5", "SCRAM-SHA-256-PLUS", "", "XOAUTH2"])
def test_create_mechanism_refuses_unknown_names(provider, name):
    with pytest.raises(Invalid, match="Unknown SASL mechanism"):
        create_mechanism(name, provider, hostname=HOST)


def test_create_mechanism_respects_what_the_provider_can_do(provider):
    class PamLike:
        method = "local"
        supports_challenge_response = False

        def mechanisms(self, *, tls, spa_required):
            return ["PLAIN", "LOGIN"]

    with pytest.raises(Invalid, match="not available with the 'local'"):
        create_mechanism("CRAM-MD5", PamLike(), hostname=HOST)


# --- PLAIN ----------------------------------------------------------------------------------

def test_plain_with_initial_response(provider):
    [result] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"\0{ALICE}\0{ALICE_PW}".encode())
    assert isinstance(result, Success) and result.principal.address == ALICE and result.final is None


def test_plain_without_initial_response_asks_with_an_empty_challenge(provider):
    first, second = run(create_mechanism("PLAIN", provider, hostname=HOST), None, f"\0{BOB}\0{BOB_PW}".encode())
    assert first == Challenge(b"")
    assert isinstance(second, Success) and second.principal.address == BOB


@pytest.mark.parametrize("authzid", [ALICE, "ALICE@Example.COM"])
def test_plain_authzid_naming_oneself_is_accepted(provider, authzid):
    [result] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"{authzid}\0{ALICE}\0{ALICE_PW}".encode())
    assert isinstance(result, Success) and result.principal.address == ALICE


@pytest.mark.parametrize("authzid", [BOB, "ghost@example.com", "not-an-address"])
def test_plain_authzid_naming_someone_else_is_refused(provider, authzid):
    [result] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"{authzid}\0{ALICE}\0{ALICE_PW}".encode())
    assert isinstance(result, Failure) and "may not act as" in result.reason and result.login == ALICE


def test_plain_wrong_password_and_unknown_user(provider):
    [wrong] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"\0{ALICE}\0{BOB_PW}".encode())
    assert_bad_credentials(wrong, ALICE)
    [unknown] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"\0ghost@example.com\0{ALICE_PW}".encode())
    assert_bad_credentials(unknown, "ghost@example.com")
    [nopw] = run(create_mechanism("PLAIN", provider, hostname=HOST), b"\0nopw@example.com\0x")
    assert_bad_credentials(nopw, "nopw@example.com")


@pytest.mark.parametrize(
    "message", [b"", b"alice", b"\0alice@example.com", b"a\0b\0c\0d", b"\0\0pw", b"\0u@example.com\0", b"\0\xff\0pw"],
    ids=["empty", "no-nul", "one-nul", "three-nul", "empty-user", "empty-password", "not-utf8"],
)
def test_plain_malformed_messages_fail(provider, message):
    [result] = run(create_mechanism("PLAIN", provider, hostname=HOST), message)
    assert isinstance(result, Failure) and not result.temporary


def test_locked_mailbox_still_authenticates_and_says_so(provider):
    [result] = run(create_mechanism("PLAIN", provider, hostname=HOST), f"\0{LOCKED}\0{LOCKED_PW}".encode())
    assert isinstance(result, Success) and result.principal.locked


# --- LOGIN ----------------------------------------------------------------------------------

def test_login_two_prompts(provider):
    results = run(create_mechanism("LOGIN", provider, hostname=HOST), None, ALICE.encode(), ALICE_PW.encode())
    assert results[:2] == [Challenge(b"Username:"), Challenge(b"Password:")]
    assert isinstance(results[2], Success) and results[2].principal.address == ALICE


@pytest.mark.parametrize("initial", [b""], ids=["equals-sign"])
def test_login_empty_initial_response_still_asks_for_the_user(provider, initial):
    assert run(create_mechanism("LOGIN", provider, hostname=HOST), initial) == [Challenge(b"Username:")]


def test_login_with_initial_user_name(provider):
    first, second = run(create_mechanism("LOGIN", provider, hostname=HOST), BOB.encode(), BOB_PW.encode())
    assert first == Challenge(b"Password:") and isinstance(second, Success)


def test_login_wrong_password_and_unknown_user(provider):
    *_, wrong = run(create_mechanism("LOGIN", provider, hostname=HOST), None, ALICE.encode(), b"nope")
    assert_bad_credentials(wrong, ALICE)
    *_, unknown = run(create_mechanism("LOGIN", provider, hostname=HOST), None, b"who@example.com", b"nope")
    assert_bad_credentials(unknown, "who@example.com")


def test_login_empty_fields_fail(provider):
    *_, empty_user = run(create_mechanism("LOGIN", provider, hostname=HOST), None, b"")
    assert isinstance(empty_user, Failure)
    *_, empty_pw = run(create_mechanism("LOGIN", provider, hostname=HOST), None, ALICE.encode(), b"")
    assert isinstance(empty_pw, Failure) and empty_pw.login == ALICE


# --- CRAM-MD5 -------------------------------------------------------------------------------

def cram_response(login: str, secret: str, challenge: bytes) -> bytes:
    return f"{login} {hmac.new(secret.encode(), challenge, hashlib.md5).hexdigest()}".encode()


def test_cram_md5_challenge_is_a_unique_message_id(provider):
    one = create_mechanism("CRAM-MD5", provider, hostname=HOST).start(None)
    two = create_mechanism("CRAM-MD5", provider, hostname=HOST).start(None)
    assert re.fullmatch(rb"<\d+\.\d+@mail\.example\.com>", one.data)
    assert one.data != two.data


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower-hex", "upper-hex"])
def test_cram_md5_success(provider, case):
    mechanism = create_mechanism("CRAM-MD5", provider, hostname=HOST)
    challenge = mechanism.start(None)
    login, digest = cram_response(ALICE, ALICE_PW, challenge.data).decode().split(" ")
    result = mechanism.step(f"{login} {case(digest)}".encode())
    assert isinstance(result, Success) and result.principal.address == ALICE


def test_cram_md5_rfc2195_example_digest():
    """RFC 2195 §2: tim / tanstaaftanstaaf over <1896.697170952@postoffice.reston.mci.net>."""
    challenge = b"<1896.697170952@postoffice.reston.mci.net>"
    assert cram_response("tim", "tanstaaftanstaaf", challenge) == b"tim b913a602c7eda7a495b4e6e7334d3890"


def test_cram_md5_wrong_secret_and_unknown_user(provider):
    mechanism = create_mechanism("CRAM-MD5", provider, hostname=HOST)
    challenge = mechanism.start(None).data
    assert_bad_credentials(mechanism.step(cram_response(ALICE, "guess", challenge)), ALICE)
    mechanism = create_mechanism("CRAM-MD5", provider, hostname=HOST)
    challenge = mechanism.start(None).data
    assert_bad_credentials(mechanism.step(cram_response("ghost@example.com", ALICE_PW, challenge)),
                           "ghost@example.com")


def test_cram_md5_refuses_an_initial_response(provider):
    result = create_mechanism("CRAM-MD5", provider, hostname=HOST).start(b"alice 00")
    assert isinstance(result, Failure) and "initial response" in result.reason


def test_cram_md5_with_an_undecryptable_secret_is_a_temporary_failure(provider):
    broken = PasswordFileProvider(provider._db, ServerKey.generate(), scram_iterations=TEST_ITERATIONS)
    mechanism = CramMd5Mechanism(broken, hostname=HOST)
    challenge = mechanism.start(None).data
    result = mechanism.step(cram_response(ALICE, ALICE_PW, challenge))
    assert isinstance(result, Failure) and result.temporary and result.login == ALICE


# --- SCRAM-SHA-256 --------------------------------------------------------------------------

class ScramClient:
    """A minimal RFC 5802 client written from the RFC, to talk to the server mechanism."""

    def __init__(self, user: str, password: str, *, authzid: str = "", nonce: str = "fyko+d2lbbFgONRv9qkxdawL"):
        self.password = password
        self.gs2 = f"n,{'a=' + authzid if authzid else ''},".encode()
        self.first_bare = f"n={user.replace('=', '=3D').replace(',', '=2C')},r={nonce}".encode()

    def first(self) -> bytes:
        return self.gs2 + self.first_bare

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        without_proof = b"c=" + base64.b64encode(self.gs2) + b",r=" + attrs["r"].encode()
        self.auth_message = self.first_bare + b"," + server_first + b"," + without_proof
        signature = hmac.new(hashlib.sha256(client_key).digest(), self.auth_message, hashlib.sha256).digest()
        self.server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        return without_proof + b",p=" + base64.b64encode(proof)

    def server_signature_ok(self, server_final: bytes) -> bool:
        expected = hmac.new(self.server_key, self.auth_message, hashlib.sha256).digest()
        return server_final == b"v=" + base64.b64encode(expected)


@pytest.mark.parametrize("with_initial", [True, False], ids=["initial-response", "empty-challenge-first"])
def test_scram_success_and_server_signature(provider, with_initial):
    client = ScramClient(ALICE, ALICE_PW)
    mechanism = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST)
    if with_initial:
        server_first = mechanism.start(client.first())
    else:
        assert mechanism.start(None) == Challenge(b"")
        server_first = mechanism.step(client.first())
    assert isinstance(server_first, Challenge) and b",i=32" in server_first.data
    result = mechanism.step(client.final(server_first.data))
    assert isinstance(result, Success) and result.principal.address == ALICE
    assert client.server_signature_ok(result.final)


def test_scram_injected_server_nonce(provider):
    client = ScramClient(BOB, BOB_PW, nonce="clientnonce")
    mechanism = ScramSha256Mechanism(provider, hostname=HOST, server_nonce="SERVERNONCE")
    server_first = mechanism.start(client.first())
    assert server_first.data.startswith(b"r=clientnonceSERVERNONCE,s=")
    assert isinstance(mechanism.step(client.final(server_first.data)), Success)


def test_scram_wrong_password_and_unknown_user(provider):
    for login, password in ((ALICE, "nope"), ("ghost@example.com", ALICE_PW)):
        client = ScramClient(login, password)
        mechanism = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST)
        server_first = mechanism.start(client.first())
        assert isinstance(server_first, Challenge), "an unknown user is not revealed at the first step"
        result = mechanism.step(client.final(server_first.data))
        assert_bad_credentials(result, login)
        assert "invalid-proof" in result.reason


def test_scram_unknown_user_sees_the_configured_iteration_count(provider):
    result = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST).start(b"n,,n=ghost@example.com,r=abc")
    assert isinstance(result, Challenge) and result.data.endswith(b",i=32")


def test_scram_authzid(provider):
    client = ScramClient(ALICE, ALICE_PW, authzid=ALICE)
    mechanism = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST)
    assert isinstance(mechanism.step(client.final(mechanism.start(client.first()).data)), Success)
    client = ScramClient(ALICE, ALICE_PW, authzid=BOB)
    mechanism = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST)
    result = mechanism.step(client.final(mechanism.start(client.first()).data))
    assert isinstance(result, Failure) and "may not act as" in result.reason


def test_scram_channel_binding_request_is_refused_clearly(provider):
    result = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST).start(b"p=tls-exporter,,n=u,r=abc")
    assert isinstance(result, Failure) and "channel-binding-not-supported" in result.reason


# --- exchange order -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_MECHANISMS)
def test_steps_out_of_order_fail(provider, name):
    mechanism = create_mechanism(name, provider, hostname=HOST)
    assert isinstance(mechanism.step(b"x"), Failure), "step before start"
    mechanism = create_mechanism(name, provider, hostname=HOST)
    mechanism.start(None)
    assert isinstance(mechanism.start(None), Failure), "start twice"
    assert isinstance(mechanism.step(b"more"), Failure), "after the end"


@pytest.mark.parametrize("name", ALL_MECHANISMS)
def test_oversized_input_fails(provider, name):
    mechanism = create_mechanism(name, provider, hostname=HOST)
    mechanism.start(None)
    result = mechanism.step(b"A" * (MAX_TOKEN + 1))
    assert isinstance(result, Failure) and "limit" in result.reason


# --- APOP -----------------------------------------------------------------------------------

RFC1939_BANNER = "<1896.697170952@dbc.mtview.ca.us>"
RFC1939_DIGEST = "c4c9334bac560ecc979e58001b3e22fb"


def test_apop_rfc1939_example():
    assert apop_digest_ok(RFC1939_BANNER, RFC1939_DIGEST, "tanstaaf")
    assert apop_digest_ok(RFC1939_BANNER.encode(), RFC1939_DIGEST.upper().encode(), b"tanstaaf")
    assert not apop_digest_ok(RFC1939_BANNER, RFC1939_DIGEST, "tanstaag")
    assert not apop_digest_ok("<other@host>", RFC1939_DIGEST, "tanstaaf")
    assert not apop_digest_ok(RFC1939_BANNER, "c4c9", "tanstaaf")
    assert not apop_digest_ok(RFC1939_BANNER, "\u00e9" * 32, "tanstaaf")
    assert not apop_digest_ok(RFC1939_BANNER, None, "tanstaaf")  # type: ignore[arg-type]


def test_check_apop_against_the_provider(provider):
    banner = "<4242.1700000000@mail.example.com>"
    digest = hashlib.md5((banner + ALICE_PW).encode()).hexdigest()
    result = check_apop(provider, ALICE, banner, digest)
    assert isinstance(result, Success) and result.principal.address == ALICE
    assert_bad_credentials(check_apop(provider, BOB, banner, digest), BOB)
    assert_bad_credentials(check_apop(provider, "ghost@example.com", banner, digest), "ghost@example.com")
    broken = PasswordFileProvider(provider._db, ServerKey.generate(), scram_iterations=TEST_ITERATIONS)
    temporary = check_apop(broken, ALICE, banner, digest)
    assert isinstance(temporary, Failure) and temporary.temporary


# --- no input makes a mechanism raise --------------------------------------------------------

def _never_raises(mechanism, initial, steps):
    results = [mechanism.start(initial)] + [mechanism.step(data) for data in steps]
    for result in results:
        assert isinstance(result, (Challenge, Failure)), result
        if isinstance(result, Failure):
            assert "internal error" not in result.reason, result
    return results


_tokens = st.binary(max_size=300)


@pytest.mark.parametrize("name", ALL_MECHANISMS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.one_of(st.none(), _tokens), steps=st.lists(_tokens, max_size=4))
def test_arbitrary_bytes_never_raise(provider, name, initial, steps):
    _never_raises(create_mechanism(name, provider, hostname=HOST), initial, steps)


_pieces = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_pieces, min_size=1, max_size=4))
def test_plain_structured_garbage_never_raises(provider, parts):
    _never_raises(create_mechanism("PLAIN", provider, hostname=HOST), "\0".join(parts).encode(), [])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_pieces, final=_pieces)
def test_scram_structured_garbage_never_raises(provider, first, final):
    mechanism = create_mechanism("SCRAM-SHA-256", provider, hostname=HOST)
    _never_raises(mechanism, f"n,,n={ALICE},r={first}".encode(), [f"c=biws,r={final},p=AAAA".encode()])
