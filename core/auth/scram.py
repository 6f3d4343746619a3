"""SCRAM-SHA-256 (RFC 5802, RFC 7677): the stored verifier and the server side of the exchange.

The verifier (salt, iterations, StoredKey, ServerKey) is all the password file keeps to check a
password: it verifies USER/PASS, AUTH PLAIN/LOGIN (``verify_plain``) and AUTH SCRAM-SHA-256
(``ScramServer``) without the password ever being stored.

Password normalization: RFC 4013 SASLprep through the standard library's ``stringprep`` tables
(map non-ASCII spaces to SPACE, drop "mapped to nothing" characters, NFKC, refuse prohibited and
bad-bidi strings; unassigned code points are allowed, as for queries). Simplification: a password
SASLprep refuses is used as its plain UTF-8 instead of being rejected (PostgreSQL does the same),
so every password an administrator can set can also be used to log on.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable
from typing import NamedTuple

from core.errors import Invalid

DEFAULT_ITERATIONS = 4096   # RFC 7677 §4: at least 4096
SALT_SIZE = 16
_HASH = hashlib.sha256
_KEY_SIZE = 32

# Per-process secret for the salts shown for unknown users: stable for a given name, so asking
# twice does not reveal that the user does not exist (RFC 5802 §5.1, "r" attribute discussion).
_FAKE_SALT_SECRET = secrets.token_bytes(32)


class ScramVerifier(NamedTuple):
    """What the password file stores for SCRAM: never the password, nothing that logs on directly."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class ScramError(Exception):
    """The exchange failed; ``error`` is the RFC 5802 §7 server-error-value (``e=``)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"e={error}: {detail}")
        self.error = error
        self.detail = detail


# --- normalization and key derivation -------------------------------------------------------

def saslprep(text: str) -> str:
    """RFC 4013 SASLprep (unassigned code points allowed); raises ValueError on a prohibited string."""
    # §2.1 mapping: non-ASCII spaces to SPACE, "commonly mapped to nothing" to nothing.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in text if not stringprep.in_table_b1(ch)
    )
    # §2.2 normalization: NFKC.
    prepared = unicodedata.normalize("NFKC", mapped)
    # §2.3 prohibited output.
    for ch in prepared:
        if (stringprep.in_table_c12(ch) or stringprep.in_table_c21_c22(ch) or stringprep.in_table_c3(ch)
                or stringprep.in_table_c4(ch) or stringprep.in_table_c5(ch) or stringprep.in_table_c6(ch)
                or stringprep.in_table_c7(ch) or stringprep.in_table_c8(ch) or stringprep.in_table_c9(ch)):
            raise ValueError(f"SASLprep prohibits the character U+{ord(ch):04X}")
    # §2.4 / RFC 3454 §6 bidirectional characters.
    if any(stringprep.in_table_d1(ch) for ch in prepared):
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise ValueError("SASLprep: a string may not mix right-to-left and left-to-right characters")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("SASLprep: a right-to-left string must start and end with a right-to-left character")
    return prepared


def normalize_password(password: str) -> bytes:
    """The bytes SCRAM hashes for ``password``: SASLprep'd UTF-8, or plain UTF-8 if SASLprep refuses."""
    try:
        return saslprep(password).encode("utf-8")
    except ValueError:
        return password.encode("utf-8", "surrogatepass")


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, _HASH).digest()


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword := Hi(Normalize(password), salt, i) = PBKDF2-HMAC-SHA-256 (RFC 5802 §3)."""
    return hashlib.pbkdf2_hmac("sha256", normalize_password(password), salt, iterations)


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS, *, salt: bytes | None = None) -> ScramVerifier:
    """A new verifier for ``password`` with a random 16-byte salt (or the given one, for test vectors)."""
    if not isinstance(iterations, int) or iterations < 1:
        raise Invalid(f"The SCRAM iteration count must be a positive whole number, not {iterations!r}.")
    salt = secrets.token_bytes(SALT_SIZE) if salt is None else bytes(salt)
    salted = salted_password(password, salt, iterations)
    client_key = _hmac(salted, b"Client Key")
    return ScramVerifier(
        salt=salt,
        iterations=iterations,
        stored_key=_HASH(client_key).digest(),
        server_key=_hmac(salted, b"Server Key"),
    )


def verify_plain(password: str, verifier: tuple[bytes, int, bytes, bytes]) -> bool:
    """True if ``password`` matches ``verifier`` (compared in constant time)."""
    salt, iterations, stored_key, _server_key = verifier
    salted = salted_password(password, salt, iterations)
    candidate = _HASH(_hmac(salted, b"Client Key")).digest()
    return hmac.compare_digest(candidate, stored_key)


def fake_verifier(username: str, iterations: int = DEFAULT_ITERATIONS) -> ScramVerifier:
    """A verifier no proof matches, with a salt stable per name: what an unknown user is shown."""
    salt = hmac.new(_FAKE_SALT_SECRET, username.encode("utf-8", "surrogatepass"), _HASH).digest()[:SALT_SIZE]
    return ScramVerifier(salt, iterations, secrets.token_bytes(_KEY_SIZE), secrets.token_bytes(_KEY_SIZE))


# --- the exchange ---------------------------------------------------------------------------

def _decode_saslname(value: str) -> str:
    """RFC 5802 §5.1: ',' travels as '=2C' and '=' as '=3D'; any other '=' is an encoding error."""
    out, i = [], 0
    while i < len(value):
        ch = value[i]
        if ch == "=":
            code = value[i + 1:i + 3]
            if code == "2C":
                out.append(",")
            elif code == "3D":
                out.append("=")
            else:
                raise ScramError("invalid-username-encoding", "a user name contains a bare '='")
            i += 3
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _attribute(part: str, name: str) -> str:
    if not part.startswith(name + "="):
        raise ScramError("other-error", f"expected the '{name}=' attribute")
    return part[len(name) + 1:]


def _new_server_nonce() -> str:
    return base64.b64encode(secrets.token_bytes(18)).decode("ascii")


VerifierLookup = Callable[[str], "tuple[bytes, int, bytes, bytes] | None"]


class ScramServer:
    """One server-side SCRAM-SHA-256 exchange: client-first → server-first, client-final → server-final.

    ``lookup(username)`` returns the user's verifier or None. An unknown user gets a plausible
    salt and fails only at the proof, like a wrong password. ``server_nonce`` is for test vectors.
    """

    def __init__(self, lookup: VerifierLookup, *, server_nonce: str | None = None,
                 fake_iterations: int = DEFAULT_ITERATIONS) -> None:
        self._lookup = lookup
        self._server_nonce = server_nonce if server_nonce is not None else _new_server_nonce()
        self._fake_iterations = fake_iterations
        self.username: str | None = None
        self.authzid: str | None = None
        self.known = False
        self._verifier: tuple[bytes, int, bytes, bytes] | None = None
        self._gs2_header = b""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._state = "client-first"

    def client_first(self, message: bytes) -> bytes:
        """Parse the client-first-message (RFC 5802 §7) and return the server-first-message."""
        if self._state != "client-first":
            raise ScramError("other-error", "the client-first-message was already received")
        self._state = "failed"
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("invalid-encoding", "the client-first-message is not UTF-8") from None
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise ScramError("other-error", "the client-first-message has no GS2 header")
        flag, authz, bare = parts
        if flag.startswith("p="):
            # We advertise no -PLUS mechanism, so a client asking for channel binding is refused.
            raise ScramError("channel-binding-not-supported", "this server does not offer channel binding")
        if flag not in ("n", "y"):
            raise ScramError("other-error", "the GS2 channel-binding flag must be 'n', 'y' or 'p='")
        if authz:
            self.authzid = _decode_saslname(_attribute(authz, "a"))
            if not self.authzid:
                raise ScramError("other-error", "the authorization identity is empty")
        attrs = bare.split(",")
        if attrs[0].startswith("m="):
            raise ScramError("extensions-not-supported", "mandatory extensions are not supported")
        if len(attrs) < 2:
            raise ScramError("other-error", "the client-first-message lacks n= or r=")
        username = _decode_saslname(_attribute(attrs[0], "n"))
        client_nonce = _attribute(attrs[1], "r")
        if not username:
            raise ScramError("invalid-username-encoding", "the user name is empty")
        if not client_nonce or not all(0x21 <= ord(c) <= 0x7E and c != "," for c in client_nonce):
            raise ScramError("other-error", "the client nonce must be printable ASCII without ','")
        self.username = username
        verifier = self._lookup(username)
        self.known = verifier is not None
        if verifier is None:
            verifier = fake_verifier(username, self._fake_iterations)
        self._verifier = verifier
        salt, iterations = verifier[0], verifier[1]
        self._gs2_header = f"{flag},{authz},".encode()
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._server_first = f"r={self._nonce},s={base64.b64encode(salt).decode('ascii')},i={iterations}"
        self._state = "client-final"
        return self._server_first.encode("ascii")

    def client_final(self, message: bytes) -> bytes:
        """Check the client-final-message's proof and return the server-final-message (``v=``)."""
        if self._state != "client-final":
            raise ScramError("other-error", "a client-final-message is not expected now")
        self._state = "failed"
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("invalid-encoding", "the client-final-message is not UTF-8") from None
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise ScramError("other-error", "the client-final-message has no proof (p=)")
        attrs = without_proof.split(",")
        if len(attrs) < 2:
            raise ScramError("other-error", "the client-final-message lacks c= or r=")
        try:
            binding = base64.b64decode(_attribute(attrs[0], "c"), validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise ScramError("invalid-encoding", "c= or p= is not valid base64") from None
        if not hmac.compare_digest(binding, self._gs2_header):
            raise ScramError("channel-bindings-dont-match", "c= does not repeat the GS2 header")
        if not hmac.compare_digest(_attribute(attrs[1], "r").encode("utf-8"), self._nonce.encode("utf-8")):
            raise ScramError("other-error", "the nonce does not match the one this server sent")
        if len(proof) != _KEY_SIZE:
            raise ScramError("invalid-proof", "the proof has the wrong length")
        assert self._verifier is not None
        _salt, _iterations, stored_key, server_key = self._verifier
        auth_message = ",".join((self._client_first_bare, self._server_first, without_proof)).encode("utf-8")
        client_signature = _hmac(stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        matches = hmac.compare_digest(_HASH(client_key).digest(), stored_key)
        if not (matches and self.known):
            raise ScramError("invalid-proof", "the proof does not match")
        self._state = "done"
        server_signature = _hmac(server_key, auth_message)
        return b"v=" + base64.b64encode(server_signature)
