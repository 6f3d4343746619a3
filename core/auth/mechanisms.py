"""Server-side SASL mechanisms shared by POP3 AUTH (RFC 5034) and SMTP AUTH (RFC 4954), plus APOP.

Each mechanism is a small state machine: ``start(initial)`` then ``step(data)`` until it returns
``Success`` or ``Failure``. The protocol layer base64-decodes what the client sends before
calling in, and base64-encodes ``Challenge.data`` (and ``Success.final``) on the way out.
``initial`` is None when the client sent no initial response and b"" when it sent "=".

A client's mistake never raises: every input yields a Challenge, Success or Failure. The calls
are blocking (database, PBKDF2): the asyncio protocol servers run them in a worker thread.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from core.auth.ntlm import NtlmError, NtlmServer
from core.auth.provider import CRAM_MD5, LOGIN, NTLM, PLAIN, SCRAM_SHA_256, AuthProvider
from core.auth.scram import ScramError, ScramServer, ScramVerifier
from core.errors import Invalid, MailError, Unavailable
from core.model import MailboxRef

log = logging.getLogger(__name__)

MAX_TOKEN = 16 * 1024         # no legitimate SASL message of ours comes near this
MAX_LOGIN_SHOWN = 320         # longest address (RFC 5321 §4.5.3.1) — enough for logs and throttle


@dataclass(frozen=True)
class Challenge:
    """Data to send to the client (the caller base64-encodes it); the exchange continues."""

    data: bytes


@dataclass(frozen=True)
class Success:
    """The client is ``principal``; ``final`` is server data to send with the success (SCRAM v=)."""

    principal: MailboxRef
    final: bytes | None = None


@dataclass(frozen=True)
class Failure:
    """The exchange failed. ``reason`` is for logs; ``login`` the attempted name, for the throttle;
    ``temporary`` means a server-side problem (say ``[SYS/TEMP]`` / 454), not bad credentials."""

    reason: str
    login: str | None = None
    temporary: bool = False


Result = Challenge | Success | Failure


class Mechanism(Protocol):
    """One server-side SASL exchange."""

    name: str
    plaintext: bool   # True for PLAIN/LOGIN: the password crosses the wire (needs TLS when SPA is required)

    def start(self, initial: bytes | None) -> Challenge | Success | Failure: ...

    def step(self, data: bytes) -> Challenge | Success | Failure: ...


def _shown_login(text: str) -> str:
    """A login as it may appear in logs and throttle keys: printable, bounded."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text)
    return cleaned[:MAX_LOGIN_SHOWN]


class _Refusal(Exception):
    """Internal: end the exchange with a Failure carrying this reason."""


def _text(data: bytes, what: str) -> str:
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        raise _Refusal(f"the {what} is not UTF-8") from None


class _Exchange:
    """Shared bookkeeping: order of calls, size limits, and turning every error into a Failure."""

    name = ""
    plaintext = False

    def __init__(self, provider: AuthProvider, *, hostname: str) -> None:
        self._provider = provider
        self._hostname = hostname
        self._started = False
        self._finished = False
        self._login: str | None = None

    def _set_login(self, login: str) -> None:
        self._login = _shown_login(login) if login else None

    def start(self, initial: bytes | None) -> Result:
        """Begin with the client's initial response (None: none sent; b"": "=" sent)."""
        if self._started:
            return self._run(lambda _: Failure(f"{self.name}: the exchange was already started"), None)
        self._started = True
        return self._run(self._start, initial)

    def step(self, data: bytes) -> Result:
        """Take the client's next (base64-decoded) response."""
        if not self._started:
            return Failure(f"{self.name}: step() before start()")
        if self._finished:
            return Failure(f"{self.name}: the exchange is already finished", self._login)
        return self._run(self._step, data)

    def _run(self, handler: Callable[[bytes | None], Result], data: bytes | None) -> Result:
        try:
            if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
                raise _Refusal("the client data is not bytes")
            if data is not None and len(data) > MAX_TOKEN:
                raise _Refusal(f"the client sent {len(data)} bytes; the limit is {MAX_TOKEN}")
            result = handler(None if data is None else bytes(data))
        except _Refusal as exc:
            result = Failure(f"{self.name}: {exc}", self._login)
        except Unavailable as exc:
            result = Failure(f"{self.name}: {exc.message}", self._login, temporary=True)
        except MailError as exc:
            result = Failure(f"{self.name}: {exc.message}", self._login)
        except Exception:  # noqa: BLE001 - a client must never crash the session
            log.exception("%s exchange failed unexpectedly", self.name)
            result = Failure(f"{self.name}: internal error", self._login, temporary=True)
        if not isinstance(result, Challenge):
            self._finished = True
        return result

    def _start(self, initial: bytes | None) -> Result:
        raise NotImplementedError

    def _step(self, data: bytes | None) -> Result:
        raise NotImplementedError

    def _bad_credentials(self, what: str = "wrong password or unknown user") -> Failure:
        return Failure(f"{self.name}: {what}", self._login)

    def _authorize(self, principal: MailboxRef, authzid: str, *, final: bytes | None = None) -> Result:
        """Accept an authorization identity only if it names the authenticated mailbox itself."""
        if authzid:
            target = self._provider.resolve(authzid)
            if target is None or target.id != principal.id:
                return Failure(f"{self.name}: {principal.address} may not act as '{_shown_login(authzid)}'",
                               self._login)
        return Success(principal, final)


class PlainMechanism(_Exchange):
    """PLAIN (RFC 4616): ``[authzid] NUL authcid NUL password`` in one message."""

    name = PLAIN
    plaintext = True

    def _start(self, initial: bytes | None) -> Result:
        return Challenge(b"") if initial is None else self._check(initial)

    def _step(self, data: bytes | None) -> Result:
        return self._check(data or b"")

    def _check(self, message: bytes) -> Result:
        parts = message.split(b"\x00")
        if len(parts) != 3:
            raise _Refusal("the message is not [authzid] NUL authcid NUL password")
        authzid, authcid, password = (_text(p, "message") for p in parts)
        self._set_login(authcid)
        if not authcid or not password:
            raise _Refusal("the user name or the password is empty")
        principal = self._provider.verify_password(authcid, password)
        if principal is None:
            return self._bad_credentials()
        return self._authorize(principal, authzid)


class LoginMechanism(_Exchange):
    """LOGIN (draft-murchison-sasl-login): "Username:" then "Password:", one per step."""

    name = LOGIN
    plaintext = True

    def __init__(self, provider: AuthProvider, *, hostname: str) -> None:
        super().__init__(provider, hostname=hostname)
        self._username: str | None = None

    def _start(self, initial: bytes | None) -> Result:
        if not initial:    # none, or "=": ask for the user name
            return Challenge(b"Username:")
        return self._take_username(initial)

    def _step(self, data: bytes | None) -> Result:
        if self._username is None:
            return self._take_username(data or b"")
        password = _text(data or b"", "password")
        if not password:
            raise _Refusal("the password is empty")
        principal = self._provider.verify_password(self._username, password)
        return self._bad_credentials() if principal is None else Success(principal)

    def _take_username(self, data: bytes) -> Result:
        username = _text(data, "user name")
        if not username:
            raise _Refusal("the user name is empty")
        self._username = username
        self._set_login(username)
        return Challenge(b"Password:")


class CramMd5Mechanism(_Exchange):
    """CRAM-MD5 (RFC 2195): the client answers ``user SP hex(HMAC-MD5(secret, challenge))``."""

    name = CRAM_MD5

    def __init__(self, provider: AuthProvider, *, hostname: str, challenge: bytes | None = None) -> None:
        super().__init__(provider, hostname=hostname)
        # RFC 2195 §2: a unique "<random.timestamp@hostname>" message id.
        self._challenge = challenge or f"<{secrets.randbelow(10**12)}.{time.time_ns()}@{hostname}>".encode()

    def _start(self, initial: bytes | None) -> Result:
        if initial:
            raise _Refusal("CRAM-MD5 takes no initial response")
        return Challenge(self._challenge)

    def _step(self, data: bytes | None) -> Result:
        user, _, digest = _text(data or b"", "response").rpartition(" ")
        self._set_login(user)
        if not user or len(digest) != 32:
            raise _Refusal("the response is not 'user SP 32-hex-digit digest'")
        found = self._provider.secret_for(user)
        secret = found[1] if found else secrets.token_hex(16)   # same work for an unknown user
        expected = hmac.new(secret.encode("utf-8"), self._challenge, hashlib.md5).hexdigest()
        if found is None or not hmac.compare_digest(expected.encode(), digest.lower().encode("utf-8")):
            return self._bad_credentials()
        return Success(found[0])


class ScramSha256Mechanism(_Exchange):
    """SCRAM-SHA-256 (RFC 5802, RFC 7677) against the stored verifier; no channel binding."""

    name = SCRAM_SHA_256

    def __init__(self, provider: AuthProvider, *, hostname: str, server_nonce: str | None = None) -> None:
        super().__init__(provider, hostname=hostname)
        self._principal: MailboxRef | None = None
        # Unknown users are shown the iteration count real verifiers get, so "i=" reveals nothing.
        self._scram = ScramServer(self._lookup, server_nonce=server_nonce, fake_iterations=provider.scram_iterations)
        self._awaiting_final = False

    def _lookup(self, username: str) -> ScramVerifier | None:
        self._set_login(username)
        found = self._provider.scram_for(username)
        if found is None:
            return None
        self._principal, verifier = found
        return verifier

    def _start(self, initial: bytes | None) -> Result:
        return Challenge(b"") if initial is None else self._step(initial)

    def _step(self, data: bytes | None) -> Result:
        try:
            if not self._awaiting_final:
                server_first = self._scram.client_first(data or b"")
                self._awaiting_final = True
                return Challenge(server_first)
            server_final = self._scram.client_final(data or b"")
        except ScramError as exc:
            raise _Refusal(str(exc)) from None
        assert self._principal is not None
        return self._authorize(self._principal, self._scram.authzid or "", final=server_final)


class NtlmMechanism(_Exchange):
    """NTLM (MS-NLMP, NTLMv2): NEGOTIATE → CHALLENGE → AUTHENTICATE, as Outlook's SPA sends it."""

    name = NTLM

    def __init__(self, provider: AuthProvider, *, hostname: str, server_challenge: bytes | None = None) -> None:
        super().__init__(provider, hostname=hostname)
        self._ntlm = NtlmServer(hostname, server_challenge=server_challenge)
        self._negotiated = False

    def _start(self, initial: bytes | None) -> Result:
        # MS's AUTH NTLM: an empty "+" first, then the client's NEGOTIATE; RFC 4422 allows it inline.
        return Challenge(b"") if not initial else self._step(initial)

    def _step(self, data: bytes | None) -> Result:
        try:
            if not self._negotiated:
                challenge = self._ntlm.negotiate(data or b"")
                self._negotiated = True
                return Challenge(challenge)
            identity = self._ntlm.authenticate(data or b"")
        except NtlmError as exc:
            raise _Refusal(str(exc)) from None
        logins = identity.logins()
        self._set_login(logins[0] if logins else identity.user)
        for login in logins:
            found = self._provider.secret_for(login)
            if found is None:
                continue
            self._set_login(login)
            if self._ntlm.verify(found[1]):
                return Success(found[0])
            return self._bad_credentials()
        return self._bad_credentials()


MECHANISMS: dict[str, Callable[..., Mechanism]] = {
    SCRAM_SHA_256: ScramSha256Mechanism,
    CRAM_MD5: CramMd5Mechanism,
    NTLM: NtlmMechanism,
    PLAIN: PlainMechanism,
    LOGIN: LoginMechanism,
}


def create_mechanism(name: str, provider: AuthProvider, *, hostname: str) -> Mechanism:
    """A fresh exchange for the SASL mechanism ``name`` (case-insensitive); Invalid if unknown or unavailable."""
    key = str(name).strip().upper()
    factory = MECHANISMS.get(key)
    if factory is None:
        raise Invalid(f"Unknown SASL mechanism '{name}'; this server knows: {', '.join(MECHANISMS)}.")
    if key not in provider.mechanisms(tls=True, spa_required=False):
        raise Invalid(f"The {key} mechanism is not available with the '{provider.method}' authentication method.")
    return factory(provider, hostname=hostname)


# --- APOP (RFC 1939 §7) -----------------------------------------------------------------------

def apop_digest_ok(timestamp_banner: str | bytes, digest_hex: str | bytes, secret: str | bytes) -> bool:
    """True if ``digest_hex`` is MD5(banner timestamp + secret) in hex (compared in constant time)."""
    try:
        banner = timestamp_banner.encode("utf-8") if isinstance(timestamp_banner, str) else bytes(timestamp_banner)
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        given = digest_hex.encode("utf-8") if isinstance(digest_hex, str) else bytes(digest_hex)
    except (TypeError, UnicodeError):
        return False
    expected = hashlib.md5(banner + key).hexdigest().encode("ascii")
    return hmac.compare_digest(expected, given.strip().lower())


def check_apop(provider: AuthProvider, login: str, timestamp_banner: str, digest_hex: str) -> Success | Failure:
    """The APOP command's check: Success with the mailbox, or Failure (temporary if the key store fails)."""
    shown = _shown_login(login) if login else None
    if not provider.supports_challenge_response:
        return Failure(f"APOP is not available with the '{provider.method}' authentication method", shown)
    try:
        found = provider.secret_for(login)
    except Unavailable as exc:
        return Failure(f"APOP: {exc.message}", shown, temporary=True)
    except MailError as exc:
        return Failure(f"APOP: {exc.message}", shown)
    secret = found[1] if found else secrets.token_hex(16)   # same work for an unknown user
    if not apop_digest_ok(timestamp_banner, digest_hex, secret) or found is None:
        return Failure("APOP: wrong digest or unknown user", shown)
    return Success(found[0])
