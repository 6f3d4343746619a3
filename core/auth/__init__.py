"""Authentication: the server key, SCRAM verifiers, SASL mechanisms and auth providers (DESIGN §6)."""
from __future__ import annotations

from core.auth.keystore import KEYRING_SERVICE, KEYSTORES, ServerKey, choose_keystore
from core.auth.mechanisms import (
    Challenge,
    Failure,
    Mechanism,
    Success,
    apop_digest_ok,
    check_apop,
    create_mechanism,
)
from core.auth.policy import LogonRules  # noqa: F401
from core.auth.provider import (
    CRAM_MD5,
    LOGIN,
    NTLM,
    PASSWORD_MAX_LEN,
    PLAIN,
    PLAINTEXT_MECHANISMS,
    SCRAM_SHA_256,
    AccountAdmin,
    AuthMethod,
    AuthProvider,
    PasswordFileProvider,
)
from core.auth.scram import DEFAULT_ITERATIONS, ScramVerifier, make_verifier, verify_plain

__all__ = [
    "AccountAdmin",
    "AuthMethod",
    "AuthProvider",
    "CRAM_MD5",
    "Challenge",
    "DEFAULT_ITERATIONS",
    "Failure",
    "KEYRING_SERVICE",
    "KEYSTORES",
    "LOGIN",
    "LogonRules",
    "Mechanism",
    "NTLM",
    "PASSWORD_MAX_LEN",
    "PLAIN",
    "PLAINTEXT_MECHANISMS",
    "PasswordFileProvider",
    "SCRAM_SHA_256",
    "ScramVerifier",
    "ServerKey",
    "Success",
    "apop_digest_ok",
    "check_apop",
    "choose_keystore",
    "create_mechanism",
    "make_verifier",
    "verify_plain",
]
