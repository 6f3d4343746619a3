"""A blocking admin-channel client (``winpop`` and tests use it; the console uses QLocalSocket).

``AdminClient(data_dir)`` talks to the local Unix socket; ``AdminClient.over_tcp(host, port,
token)`` to a service's remote administration listener (TLS, then ``auth.login``).
"""
from __future__ import annotations

import hashlib
import itertools
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import Unavailable, Unreachable, from_dict
from core.ipc import protocol


class AdminClient:
    """One connection to the service's admin socket; ``call`` sends a request and waits."""

    def __init__(self, data_dir: str | Path, *, timeout: float = 120.0) -> None:
        self.path = protocol.socket_path(data_dir)
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(self.path))
        except FileNotFoundError:
            self._sock.close()
            raise Unreachable(
                f"The mail service is not running for {Path(data_dir)} (no {self.path.name}). "
                f"Start it with: python main.py service --data-dir {Path(data_dir)}"
            ) from None
        except ConnectionRefusedError:
            self._sock.close()
            raise Unreachable(
                f"The mail service for {Path(data_dir)} is not answering (stale {self.path.name}). "
                f"Start it with: python main.py service --data-dir {Path(data_dir)}"
            ) from None
        except PermissionError:
            self._sock.close()
            raise Unavailable(
                f"You may not use the admin channel at {self.path}: run as root, as the service's "
                "user, or as a member of its admin group."
            ) from None
        self._file = self._sock.makefile("rb")
        self.events: list[dict[str, Any]] = []

    @classmethod
    def over_tcp(cls, host: str, port: int, token: str, *, fingerprint: str = "", cafile: str | None = None,
                 timeout: float = 120.0) -> AdminClient:
        """Connect to a remote administration listener and log in with ``token``.

        The server's certificate must either verify (system CAs or ``cafile``, and the host
        name), or have the SHA-256 ``fingerprint`` given (the service's default certificate is
        self-signed: pin it). Raises Unavailable (unreachable, untrusted) or Forbidden (token).
        """
        self = cls.__new__(cls)
        self.path = Path(f"{host}:{port}")
        self._ids = itertools.count(1)
        self.events = []
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Unreachable(f"The POP3 Service at {host}:{port} is not reachable ({exc.strerror or exc}). "
                              "Is remote administration on (winpop set admin_tcp_port PORT)?") from None
        want = normalize_fingerprint(fingerprint)
        context = ssl.create_default_context(cafile=cafile)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if want:  # pinned: the fingerprint is the trust, not a CA
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            sock = context.wrap_socket(raw, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            seen = _peer_fingerprint(host, port, timeout)
            raw.close()
            raise Unavailable(f"The certificate of {host}:{port} is not trusted ({exc.verify_message}). If its "
                              f"SHA-256 fingerprint is {seen}, as 'winpop status' on that server "
                              "shows (or its console's Service Status page), pass it with --fingerprint.") from None
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise Unavailable(f"TLS with {host}:{port} failed: {exc}") from None
        if want:
            seen = certificate_fingerprint(sock.getpeercert(binary_form=True) or b"")
            if seen != want:
                sock.close()
                raise Unavailable(f"The certificate of {host}:{port} has the fingerprint {seen}, not the one "
                                  f"given ({want}). Someone may be in between; check the server.")
        self._sock = sock
        self._file = sock.makefile("rb")
        try:
            self.call("auth.login", token=token)
        except Exception:
            self.close()
            raise
        return self

    def call(self, op: str, **params: Any) -> Any:
        """Send one request; return its result or raise the MailError it answered with."""
        req_id = next(self._ids)
        try:
            self._sock.sendall(protocol.request(req_id, op, params))
        except OSError as exc:
            raise Unreachable(f"Lost the connection to the mail service: {exc}") from None
        while True:
            msg = self._read()
            if "event" in msg:
                self.events.append(msg)
                continue
            if msg.get("id") != req_id and msg.get("id") is not None:
                continue
            if "error" in msg:
                raise from_dict(msg["error"])
            return msg.get("result")

    def next_event(self) -> dict[str, Any]:
        """Wait for the next pushed event (after ``events.subscribe``)."""
        if self.events:
            return self.events.pop(0)
        msg = self._read()
        while "event" not in msg:
            msg = self._read()
        return msg

    def iter_events(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.next_event()

    def _read(self) -> dict[str, Any]:
        line = self._file.readline(protocol.MAX_RESPONSE + 1)
        if not line:
            raise Unreachable("The mail service closed the admin connection.")
        return protocol.decode(line, limit=protocol.MAX_RESPONSE)

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def certificate_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated upper-case hex (as browsers show it)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def normalize_fingerprint(text: str) -> str:
    hexdigits = "".join(ch for ch in str(text or "").upper() if ch in "0123456789ABCDEF")
    return ":".join(hexdigits[i:i + 2] for i in range(0, len(hexdigits), 2))


def _peer_fingerprint(host: str, port: int, timeout: float) -> str:
    """The fingerprint of a server's certificate, fetched without trusting it (for the message)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as sock:
            return certificate_fingerprint(sock.getpeercert(binary_form=True) or b"")
    except OSError:
        return "(unknown)"
