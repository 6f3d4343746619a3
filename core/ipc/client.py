"""A blocking admin-channel client (``winpop`` and tests use it; the console uses QLocalSocket)."""
from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import Unavailable, from_dict
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
            raise Unavailable(
                f"The mail service is not running for {Path(data_dir)} (no {self.path.name}). "
                f"Start it with: python main.py service --data-dir {Path(data_dir)}"
            ) from None
        except ConnectionRefusedError:
            self._sock.close()
            raise Unavailable(
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

    def call(self, op: str, **params: Any) -> Any:
        """Send one request; return its result or raise the MailError it answered with."""
        req_id = next(self._ids)
        try:
            self._sock.sendall(protocol.request(req_id, op, params))
        except OSError as exc:
            raise Unavailable(f"Lost the connection to the mail service: {exc}") from None
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
            raise Unavailable("The mail service closed the admin connection.")
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
