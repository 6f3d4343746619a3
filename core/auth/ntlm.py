"""The server side of NTLM authentication (MS-NLMP), NTLMv2 responses only.

This is what Outlook's "Secure Password Authentication" speaks over POP3 and SMTP ``AUTH NTLM``:
NEGOTIATE → CHALLENGE → AUTHENTICATE, with no security layer afterwards. The server needs the
password (as a password-equivalent) to recompute the client's NTProofStr.

Deliberate limits: NTLMv1 and LM responses (and NTLM2 session responses, which are v1) are
refused, since every Windows since Vista sends NTLMv2 by default; anonymous logons are refused;
key exchange, signing and sealing are not offered (there is nothing to sign after POP3/SMTP
authentication), so a client's MIC is keyed with the session base key.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
import time
from dataclasses import dataclass

from core.auth.md4 import md4

SIGNATURE = b"NTLMSSP\x00"
NEGOTIATE_MESSAGE, CHALLENGE_MESSAGE, AUTHENTICATE_MESSAGE = 1, 2, 3

# NegotiateFlags, MS-NLMP §2.2.2.5
NEGOTIATE_UNICODE = 0x00000001
NEGOTIATE_OEM = 0x00000002
REQUEST_TARGET = 0x00000004
NEGOTIATE_SIGN = 0x00000010
NEGOTIATE_SEAL = 0x00000020
NEGOTIATE_NTLM = 0x00000200
NEGOTIATE_ALWAYS_SIGN = 0x00008000
TARGET_TYPE_SERVER = 0x00020000
NEGOTIATE_EXTENDED_SESSIONSECURITY = 0x00080000
NEGOTIATE_TARGET_INFO = 0x00800000
NEGOTIATE_VERSION = 0x02000000
NEGOTIATE_128 = 0x20000000
NEGOTIATE_KEY_EXCH = 0x40000000
NEGOTIATE_56 = 0x80000000

# AV_PAIR ids, MS-NLMP §2.2.2.1
AV_EOL, AV_NB_COMPUTER, AV_NB_DOMAIN, AV_DNS_COMPUTER, AV_DNS_DOMAIN = 0, 1, 2, 3, 4
AV_FLAGS, AV_TIMESTAMP = 6, 7
AV_FLAG_MIC_PRESENT = 0x00000002

# Windows version reported in the CHALLENGE (informational only): 6.1 build 7601, NTLM revision 15.
_VERSION = struct.pack("<BBH3xB", 6, 1, 7601, 0x0F)
_CHALLENGE_HEADER_SIZE = 56
_MIC_OFFSET = 72
_MIC_SIZE = 16
_BLOB_HEADER_SIZE = 28      # RespType, HiRespType, Z(6), Time(8), ClientChallenge(8), Z(4)
_FILETIME_EPOCH_OFFSET = 11644473600   # seconds from 1601-01-01 to 1970-01-01


class NtlmError(Exception):
    """The client's token is malformed or asks for something this server refuses."""


@dataclass(frozen=True)
class NtlmIdentity:
    """Who an AUTHENTICATE message claims to be, as the client typed it."""

    user: str
    domain: str
    workstation: str

    def logins(self) -> list[str]:
        """The mailbox logins this identity may mean: 'alice@example.com' as the user name (any
        domain), or user 'alice' in domain 'example.com'. Duplicates and empties removed."""
        candidates = []
        if "@" in self.user:
            candidates.append(self.user)
        if self.user and self.domain and "@" not in self.user:
            candidates.append(f"{self.user}@{self.domain}")
        if not candidates and self.user:
            candidates.append(self.user)   # for the throttle's sake; will not resolve
        seen: list[str] = []
        for login in candidates:
            if login not in seen:
                seen.append(login)
        return seen


def _hmac_md5(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.md5).digest()


def nt_hash(password: str) -> bytes:
    """NTOWFv1: MD4 of the UTF-16LE password (MS-NLMP §3.3.1)."""
    return md4(password.encode("utf-16-le", "surrogatepass"))


def ntowfv2(password: str, user: str, domain: str) -> bytes:
    """NTOWFv2 = HMAC-MD5(MD4(UTF-16LE(password)), UTF-16LE(UPPER(user) + domain)) (MS-NLMP §3.3.2)."""
    return _hmac_md5(nt_hash(password), (user.upper() + domain).encode("utf-16-le", "surrogatepass"))


def _rc4(key: bytes, data: bytes) -> bytes:
    """RC4, only to unwrap a client's EncryptedRandomSessionKey (16 bytes) for its MIC."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) & 0xFF])
    return bytes(out)


def _av_pair(av_id: int, value: bytes) -> bytes:
    return struct.pack("<HH", av_id, len(value)) + value


def _parse_av_pairs(data: bytes) -> dict[int, bytes]:
    pairs: dict[int, bytes] = {}
    offset = 0
    while True:
        if offset + 4 > len(data):
            raise NtlmError("the target information in the NTLM response is truncated")
        av_id, length = struct.unpack_from("<HH", data, offset)
        offset += 4
        if av_id == AV_EOL:
            return pairs
        if offset + length > len(data):
            raise NtlmError("an AV pair in the NTLM response runs past its end")
        pairs.setdefault(av_id, data[offset:offset + length])
        offset += length


def _field(message: bytes, at: int) -> bytes:
    """The payload a (Len, MaxLen, Offset) security buffer at ``at`` points to."""
    length, _max, offset = struct.unpack_from("<HHI", message, at)
    if length and offset + length > len(message):
        raise NtlmError("a field of the NTLM message points past its end")
    return message[offset:offset + length] if length else b""


def _check_header(message: bytes, kind: int, min_size: int) -> None:
    if len(message) < min_size or not message.startswith(SIGNATURE):
        raise NtlmError("this is not an NTLM message")
    (found,) = struct.unpack_from("<I", message, 8)
    if found != kind:
        raise NtlmError(f"expected NTLM message type {kind}, got {found}")


def netbios_names(hostname: str) -> tuple[str, str, str, str]:
    """(NetBIOS computer, NetBIOS domain, DNS computer, DNS domain) derived from a host name."""
    host = (hostname or "").strip().rstrip(".").lower() or "localhost"
    labels = host.split(".")
    nb_computer = labels[0].upper()[:15] or "LOCALHOST"
    if len(labels) > 1:
        return nb_computer, labels[1].upper()[:15], host, ".".join(labels[1:])
    return nb_computer, "WORKGROUP", host, host


class NtlmServer:
    """One server-side NTLM exchange: ``negotiate()`` → CHALLENGE, ``authenticate()``, ``verify()``."""

    def __init__(self, hostname: str, *, server_challenge: bytes | None = None) -> None:
        self.hostname = hostname
        self._server_challenge = server_challenge if server_challenge is not None else secrets.token_bytes(8)
        self._negotiate = b""
        self._challenge = b""
        self._authenticate = b""
        self._identity: NtlmIdentity | None = None
        self._nt_response = b""
        self._mic: bytes | None = None
        self._encrypted_session_key = b""
        self._auth_flags = 0

    # NEGOTIATE → CHALLENGE ------------------------------------------------------------------

    def negotiate(self, message: bytes) -> bytes:
        """Read the client's NEGOTIATE_MESSAGE and return our CHALLENGE_MESSAGE (MS-NLMP §2.2.1.2)."""
        if self._challenge:
            raise NtlmError("the NTLM negotiation already happened")
        message = bytes(message)
        _check_header(message, NEGOTIATE_MESSAGE, 16)
        (client_flags,) = struct.unpack_from("<I", message, 12)
        unicode = bool(client_flags & NEGOTIATE_UNICODE) or not client_flags & NEGOTIATE_OEM
        flags = (
            (NEGOTIATE_UNICODE if unicode else NEGOTIATE_OEM)
            | REQUEST_TARGET | NEGOTIATE_NTLM | NEGOTIATE_ALWAYS_SIGN | TARGET_TYPE_SERVER
            | NEGOTIATE_TARGET_INFO
            | (client_flags & (NEGOTIATE_EXTENDED_SESSIONSECURITY | NEGOTIATE_VERSION | NEGOTIATE_128 | NEGOTIATE_56))
        )
        nb_computer, nb_domain, dns_computer, dns_domain = netbios_names(self.hostname)
        filetime = int((time.time() + _FILETIME_EPOCH_OFFSET) * 10_000_000)
        target_info = b"".join((
            _av_pair(AV_NB_DOMAIN, nb_domain.encode("utf-16-le")),
            _av_pair(AV_NB_COMPUTER, nb_computer.encode("utf-16-le")),
            _av_pair(AV_DNS_DOMAIN, dns_domain.encode("utf-16-le")),
            _av_pair(AV_DNS_COMPUTER, dns_computer.encode("utf-16-le")),
            # MsvAvTimestamp makes NTLMv2 clients add a MIC over all three messages.
            _av_pair(AV_TIMESTAMP, struct.pack("<Q", filetime)),
            _av_pair(AV_EOL, b""),
        ))
        target_name = nb_computer.encode("utf-16-le" if unicode else "ascii")
        name_offset = _CHALLENGE_HEADER_SIZE
        info_offset = name_offset + len(target_name)
        challenge = b"".join((
            SIGNATURE,
            struct.pack("<I", CHALLENGE_MESSAGE),
            struct.pack("<HHI", len(target_name), len(target_name), name_offset),
            struct.pack("<I", flags),
            self._server_challenge,
            b"\x00" * 8,
            struct.pack("<HHI", len(target_info), len(target_info), info_offset),
            _VERSION if flags & NEGOTIATE_VERSION else b"\x00" * 8,
            target_name,
            target_info,
        ))
        self._negotiate = message
        self._challenge = challenge
        return challenge

    # AUTHENTICATE ---------------------------------------------------------------------------

    def authenticate(self, message: bytes) -> NtlmIdentity:
        """Parse the AUTHENTICATE_MESSAGE (MS-NLMP §2.2.1.3); the password is checked by ``verify``."""
        if not self._challenge:
            raise NtlmError("an NTLM AUTHENTICATE message came before the NEGOTIATE message")
        if self._identity is not None:
            raise NtlmError("the NTLM exchange is already finished")
        message = bytes(message)
        _check_header(message, AUTHENTICATE_MESSAGE, 64)
        (flags,) = struct.unpack_from("<I", message, 60)
        nt_response = _field(message, 20)
        domain_raw, user_raw, workstation_raw = _field(message, 28), _field(message, 36), _field(message, 44)
        encrypted_session_key = _field(message, 52)
        encoding = "utf-16-le" if flags & NEGOTIATE_UNICODE else "latin-1"
        try:
            user, domain, workstation = (raw.decode(encoding) for raw in (user_raw, domain_raw, workstation_raw))
        except UnicodeDecodeError:
            raise NtlmError("a name in the NTLM message is not valid text") from None
        if not user or not nt_response:
            raise NtlmError("anonymous NTLM logons are not accepted")
        if len(nt_response) == 24:
            raise NtlmError("NTLMv1 responses are refused; set the client to send NTLMv2 (LM compatibility level 3+)")
        if len(nt_response) < 16 + _BLOB_HEADER_SIZE or nt_response[16:18] != b"\x01\x01":
            raise NtlmError("the NTLMv2 response is malformed")
        av_pairs = _parse_av_pairs(nt_response[16 + _BLOB_HEADER_SIZE:])
        mic = None
        av_flags = av_pairs.get(AV_FLAGS, b"")
        if len(av_flags) == 4 and struct.unpack("<I", av_flags)[0] & AV_FLAG_MIC_PRESENT:
            # The MIC sits after Version; the payload must start after it for the field to exist.
            payload_start = min(
                (struct.unpack_from("<I", message, at + 4)[0] for at in (12, 20, 28, 36, 44, 52)
                 if struct.unpack_from("<H", message, at)[0]),
                default=len(message),
            )
            if payload_start < _MIC_OFFSET + _MIC_SIZE or len(message) < _MIC_OFFSET + _MIC_SIZE:
                raise NtlmError("the NTLM message announces a MIC but has none")
            mic = message[_MIC_OFFSET:_MIC_OFFSET + _MIC_SIZE]
        self._authenticate = message
        self._auth_flags = flags
        self._nt_response = nt_response
        self._mic = mic
        self._encrypted_session_key = encrypted_session_key
        self._identity = NtlmIdentity(user=user, domain=domain, workstation=workstation)
        return self._identity

    def verify(self, password: str) -> bool:
        """True if the AUTHENTICATE message was made with ``password`` (NTProofStr, then the MIC)."""
        identity = self._identity
        if identity is None:
            return False
        response_key = ntowfv2(password, identity.user, identity.domain)
        nt_proof, blob = self._nt_response[:16], self._nt_response[16:]
        expected = _hmac_md5(response_key, self._server_challenge + blob)
        if not hmac.compare_digest(expected, nt_proof):
            return False
        if self._mic is None:
            return True
        # MS-NLMP §3.2.5.1.2: KeyExchangeKey = SessionBaseKey for NTLMv2.
        key_exchange_key = _hmac_md5(response_key, nt_proof)
        keys = [key_exchange_key]
        if self._auth_flags & NEGOTIATE_KEY_EXCH and len(self._encrypted_session_key) == 16:
            keys.insert(0, _rc4(key_exchange_key, self._encrypted_session_key))
        zeroed = (self._authenticate[:_MIC_OFFSET] + b"\x00" * _MIC_SIZE
                  + self._authenticate[_MIC_OFFSET + _MIC_SIZE:])
        signed = self._negotiate + self._challenge + zeroed
        return any(hmac.compare_digest(_hmac_md5(key, signed), self._mic) for key in keys)
