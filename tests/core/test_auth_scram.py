"""SCRAM-SHA-256 against RFC 7677's test vector, the verifier, SASLprep and the failure modes."""
from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from core.auth.scram import (
    DEFAULT_ITERATIONS,
    ScramError,
    ScramServer,
    make_verifier,
    normalize_password,
    saslprep,
    verify_plain,
)
from core.errors import Invalid

# RFC 7677 §3
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

LOW_ITERATIONS = 64


def scram_client_final(password: str, client_first: bytes, server_first: bytes, *, gs2: bytes = b"n,,") -> bytes:
    """A from-the-RFC client computation (RFC 5802 §3), independent of the server code."""
    attrs = dict(part.split("=", 1) for part in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = b"c=" + base64.b64encode(gs2) + b",r=" + attrs["r"].encode()
    auth_message = client_first[len(gs2):] + b"," + server_first + b"," + without_proof
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return without_proof + b",p=" + base64.b64encode(proof)


@pytest.fixture(scope="module")
def rfc_verifier():
    return make_verifier("pencil", 4096, salt=RFC_SALT)


def server_for(verifiers: dict, **kwargs) -> ScramServer:
    return ScramServer(verifiers.get, **kwargs)


def test_rfc7677_vector_server_messages(rfc_verifier):
    server = server_for({"user": rfc_verifier}, server_nonce=RFC_SERVER_NONCE)
    assert server.client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    assert server.username == "user" and server.known and server.authzid is None


def test_rfc7677_vector_verify_plain(rfc_verifier):
    assert verify_plain("pencil", rfc_verifier)
    assert not verify_plain("pencil ", rfc_verifier)
    assert not verify_plain("Pencil", rfc_verifier)


def test_make_verifier_defaults():
    verifier = make_verifier("pencil", LOW_ITERATIONS)
    assert len(verifier.salt) == 16 and len(verifier.stored_key) == 32 and len(verifier.server_key) == 32
    assert make_verifier("pencil", LOW_ITERATIONS).salt != verifier.salt
    salt, iterations, stored, server = verifier   # a plain 4-tuple too
    assert iterations == LOW_ITERATIONS
    assert DEFAULT_ITERATIONS == 4096
    with pytest.raises(Invalid):
        make_verifier("pencil", 0)


def test_wrong_proof_is_invalid_proof(rfc_verifier):
    server = server_for({"user": rfc_verifier}, server_nonce=RFC_SERVER_NONCE)
    server.client_first(RFC_CLIENT_FIRST)
    final = scram_client_final("wrong", RFC_CLIENT_FIRST, RFC_SERVER_FIRST)
    with pytest.raises(ScramError) as caught:
        server.client_final(final)
    assert caught.value.error == "invalid-proof"


def test_unknown_user_gets_a_stable_plausible_salt_and_fails_at_the_proof():
    first = server_for({}).client_first(b"n,,n=nobody,r=abc")
    second = server_for({}).client_first(b"n,,n=nobody,r=abc")
    salt_of = lambda msg: dict(p.split("=", 1) for p in msg.decode().split(","))["s"]  # noqa: E731
    assert salt_of(first) == salt_of(second), "asking twice reveals nothing"
    server = server_for({})
    server_first = server.client_first(b"n,,n=nobody,r=abc")
    with pytest.raises(ScramError) as caught:
        server.client_final(scram_client_final("anything", b"n,,n=nobody,r=abc", server_first))
    assert caught.value.error == "invalid-proof" and not server.known


def test_authzid_and_escaped_names_are_decoded():
    verifier = make_verifier("pw", LOW_ITERATIONS)
    client_first = b"n,a=a=3Db=2Cc,n=a=3Db=2Cc,r=nonce"
    server = server_for({"a=b,c": verifier})
    server_first = server.client_first(client_first)
    final = server.client_final(scram_client_final("pw", client_first, server_first, gs2=b"n,a=a=3Db=2Cc,"))
    assert final.startswith(b"v=")
    assert server.username == "a=b,c" and server.authzid == "a=b,c"


def test_y_flag_is_accepted_since_we_offer_no_plus_variant():
    verifier = make_verifier("pw", LOW_ITERATIONS)
    server = server_for({"u": verifier})
    client_first = b"y,,n=u,r=xyz"
    server_first = server.client_first(client_first)
    assert server.client_final(scram_client_final("pw", client_first, server_first, gs2=b"y,,")).startswith(b"v=")


@pytest.mark.parametrize(
    ("client_first", "error"),
    [
        (b"p=tls-unique,,n=user,r=abc", "channel-binding-not-supported"),
        (b"n,,m=ext,n=user,r=abc", "extensions-not-supported"),
        (b"n,,n=us=er,r=abc", "invalid-username-encoding"),
        (b"n,,n=,r=abc", "invalid-username-encoding"),
        (b"x,,n=user,r=abc", "other-error"),
        (b"n,,n=user", "other-error"),
        (b"n,,r=abc,n=user", "other-error"),
        (b"n,,n=user,r=", "other-error"),
        (b"n,,n=user,r=a b", "other-error"),
        (b"\xff\xfe", "invalid-encoding"),
        (b"", "other-error"),
    ],
    ids=["channel-binding", "mandatory-ext", "bad-escape", "empty-user", "bad-flag", "no-nonce",
         "wrong-order", "empty-nonce", "nonce-with-space", "not-utf8", "empty"],
)
def test_bad_client_first_messages(client_first, error):
    with pytest.raises(ScramError) as caught:
        server_for({}).client_first(client_first)
    assert caught.value.error == error


@pytest.mark.parametrize(
    ("mangle", "error"),
    [
        (lambda m: m.replace(b"c=biws", b"c=eSws"), "channel-bindings-dont-match"),
        (lambda m: m.replace(b",r=rOpr", b",r=XOpr"), "other-error"),
        (lambda m: m.split(b",p=")[0], "other-error"),
        (lambda m: m.replace(b"p=dHzb", b"p=!!zb"), "invalid-encoding"),
        (lambda m: m.split(b",p=")[0] + b",p=AAAA", "invalid-proof"),
    ],
    ids=["binding-differs", "nonce-differs", "no-proof", "proof-not-base64", "short-proof"],
)
def test_bad_client_final_messages(rfc_verifier, mangle, error):
    server = server_for({"user": rfc_verifier}, server_nonce=RFC_SERVER_NONCE)
    server.client_first(RFC_CLIENT_FIRST)
    with pytest.raises(ScramError) as caught:
        server.client_final(mangle(RFC_CLIENT_FINAL))
    assert caught.value.error == error


def test_messages_out_of_order_are_refused(rfc_verifier):
    server = server_for({"user": rfc_verifier}, server_nonce=RFC_SERVER_NONCE)
    with pytest.raises(ScramError):
        server.client_final(RFC_CLIENT_FINAL)
    server = server_for({"user": rfc_verifier}, server_nonce=RFC_SERVER_NONCE)
    server.client_first(RFC_CLIENT_FIRST)
    server.client_final(RFC_CLIENT_FINAL)
    with pytest.raises(ScramError):
        server.client_final(RFC_CLIENT_FINAL)
    with pytest.raises(ScramError):
        server.client_first(RFC_CLIENT_FIRST)


@pytest.mark.parametrize(
    ("raw", "prepared"),
    [
        ("I\u00adX", "IX"),                    # RFC 4013 §3 example 1: soft hyphen mapped to nothing
        ("user", "user"),
        ("USER", "USER"),                      # case preserved
        ("\u00aa", "a"),                       # NFKC
        ("\u2168", "IX"),                      # NFKC
        ("a\u00a0b", "a b"),                   # non-ASCII space → SPACE
    ],
)
def test_saslprep_examples(raw, prepared):
    assert saslprep(raw) == prepared


@pytest.mark.parametrize("raw", ["\u0007", "\u0627\u0031"], ids=["control", "bidi"])
def test_saslprep_refusals_fall_back_to_raw_utf8(raw):
    with pytest.raises(ValueError):
        saslprep(raw)
    assert normalize_password(raw) == raw.encode()


def test_equivalent_unicode_passwords_verify():
    verifier = make_verifier("\u2168-pass\u00ad", LOW_ITERATIONS)
    assert verify_plain("IX-pass", verifier)
