"""The console's admin-channel client: a QObject over QLocalSocket, signal driven, never blocking.

``request(op, params, on_ok, on_err)`` sends one JSON-lines request and calls back with the result
or a ``MailError``. After every (re)connection it subscribes to change events and emits
``connected``; losing the service fails the pending requests, emits ``disconnected`` and retries
on a timer until the service is back.
"""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QLocalSocket

from core.errors import MailError, Unavailable, from_dict
from core.ipc import protocol

log = logging.getLogger(__name__)

OnOk = Callable[[Any], None]
OnErr = Callable[[MailError], None]

RETRY_MS = 1000          # first reconnect attempt after a loss
RETRY_MAX_MS = 5000      # back off to this while the service stays away


class IpcClient(QObject):
    """One connection to ``<data_dir>/admin.sock``; reconnects by itself."""

    event_received = Signal(str, object)
    connected = Signal()
    disconnected = Signal()

    def __init__(self, data_dir: str | Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.location = str(protocol.socket_path(self.data_dir))
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[OnOk | None, OnErr | None]] = {}
        self._buffer = b""
        self._is_connected = False
        self._announced_down = False   # ``disconnected`` is emitted once per outage
        self._stopped = False
        self.last_error = ""
        self._socket = QLocalSocket(self)
        self._socket.connected.connect(self._on_connected)
        self._socket.disconnected.connect(self._on_disconnected)
        self._socket.errorOccurred.connect(self._on_error)
        self._socket.readyRead.connect(self._on_ready_read)
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._try_connect)
        self._retry_ms = RETRY_MS

    # -- public interface (the fake in gui/testing.py has the same) ------------------------------
    @property
    def is_connected(self) -> bool:
        return self._is_connected

    @property
    def target(self) -> str:
        """Where this client points, for people (title bar, banner)."""
        return str(self.data_dir)

    def start(self) -> None:
        """Connect now, and keep reconnecting whenever the service goes away."""
        self._stopped = False
        self._try_connect()

    def stop(self) -> None:
        """Disconnect and stop retrying."""
        self._stopped = True
        self._retry.stop()
        self._socket.abort()
        self._drop_connection("The console closed the connection.")

    def retry_now(self) -> None:
        if not self._is_connected:
            self._retry.stop()
            self._retry_ms = RETRY_MS
            self._try_connect()

    def request(self, op: str, params: dict[str, Any] | None = None,
                on_ok: OnOk | None = None, on_err: OnErr | None = None) -> None:
        """Send ``op``; exactly one of ``on_ok(result)`` / ``on_err(error)`` is called later."""
        if not self._is_connected:
            err = Unavailable(self._unavailable_text())
            if on_err is not None:
                QTimer.singleShot(0, self, lambda: on_err(err))
            return
        req_id = next(self._ids)
        self._pending[req_id] = (on_ok, on_err)
        self._socket.write(protocol.request(req_id, op, params or {}))

    # -- socket plumbing -----------------------------------------------------------------------
    def _unavailable_text(self) -> str:
        reason = f" ({self.last_error})" if self.last_error else ""
        return f"The POP3 Service is not reachable at {self.location}{reason}."

    def _try_connect(self) -> None:
        state = self._socket.state()
        if self._stopped or state == QLocalSocket.LocalSocketState.ConnectedState:
            return
        if state != QLocalSocket.LocalSocketState.UnconnectedState:
            self._socket.abort()     # a connect or close still hanging: start afresh
        self._socket.connectToServer(self.location)

    def _on_connected(self) -> None:
        self._buffer = b""
        self._retry_ms = RETRY_MS
        self.last_error = ""
        self._is_connected = True
        self._announced_down = False
        # Subscribe first: events for changes committed after this line reach us, and our own
        # later requests are answered on the same ordered stream.
        self.request("events.subscribe", {}, None, lambda e: log.warning("subscribe failed: %s", e))
        self.connected.emit()

    def _on_error(self, _error: QLocalSocket.LocalSocketError) -> None:
        self.last_error = self._socket.errorString()
        # A failed connect reports the error while still "connecting"; a lost connection also
        # sends ``disconnected``. Either way the connection is gone: dropping twice is harmless.
        if self._socket.state() != QLocalSocket.LocalSocketState.ConnectedState or not self._is_connected:
            self._drop_connection(self._unavailable_text())
            self._schedule_retry()

    def _on_disconnected(self) -> None:
        self._drop_connection("The POP3 Service closed the admin connection.")
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._stopped or self._retry.isActive():
            return
        self._retry.start(self._retry_ms)
        self._retry_ms = min(self._retry_ms * 2, RETRY_MAX_MS)

    def _drop_connection(self, message: str) -> None:
        pending, self._pending = self._pending, {}
        for _ok, err in pending.values():
            if err is not None:
                err(Unavailable(message))
        self._is_connected = False
        if not self._announced_down:
            self._announced_down = True
            self.disconnected.emit()

    def _on_ready_read(self) -> None:
        self._buffer += bytes(self._socket.readAll().data())
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                self._dispatch(line)

    def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("ignoring a malformed line from the service: %r", line[:200])
            return
        if not isinstance(msg, dict):
            return
        if "event" in msg:
            self.event_received.emit(str(msg["event"]), msg.get("data"))
            return
        callbacks = self._pending.pop(msg.get("id"), None)
        if callbacks is None:
            return
        on_ok, on_err = callbacks
        if "error" in msg:
            if on_err is not None:
                on_err(from_dict(msg.get("error") or {}))
        elif on_ok is not None:
            on_ok(msg.get("result"))
