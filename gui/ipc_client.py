"""The console's admin-channel client: a QObject over QLocalSocket, signal driven, never blocking.

``request(op, params, on_ok, on_err)`` sends one JSON-lines request and calls back with the result
or a ``MailError``. After every (re)connection it subscribes to change events and emits
``connected``; losing the service fails the pending requests, emits ``disconnected`` and retries
on a timer until the service is back.

The same client also reaches another computer's remote administration listener
(``point_at_remote``): a ``QSslSocket`` (TLS 1.2+), then ``auth.login`` with a token. The
server's certificate must verify, or match the fingerprint the user accepted on first use
(``certificate_unknown`` asks; ``trust`` answers). A refused token stops the retries and emits
``auth_failed`` so the window can ask for another.
"""
from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtNetwork import QAbstractSocket, QLocalSocket, QSsl, QSslSocket

from core.errors import Invalid, MailError, Unavailable, from_dict
from core.ipc import protocol
from core.ipc.client import certificate_fingerprint
from core.ipc.ops import check_params

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
    certificate_unknown = Signal(str, str)   # fingerprint, what is wrong with it (remote only)
    auth_failed = Signal(str)                # the service refused the token (remote only)

    def __init__(self, data_dir: str | Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir)
        self.location = str(protocol.socket_path(self.data_dir))
        self.remote: tuple[str, int] | None = None    # (host, port) when pointed at another computer
        self._token = ""
        self.fingerprint = ""                          # the pinned certificate fingerprint (remote)
        self.seen_fingerprint = ""                     # the certificate the server showed last
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[OnOk | None, OnErr | None]] = {}
        self._buffer = b""
        self._is_connected = False
        self._announced_down = False   # ``disconnected`` is emitted once per outage
        self._stopped = False
        self.last_error = ""
        self._socket: QLocalSocket | QSslSocket = self._make_socket()
        self._retry = QTimer(self)
        self._retry.setSingleShot(True)
        self._retry.timeout.connect(self._try_connect)
        self._retry_ms = RETRY_MS

    # -- public interface (the fake in tests/fake_service.py has the same) --------------
    @property
    def is_connected(self) -> bool:
        return self._is_connected

    @property
    def target(self) -> str:
        """Where this client points, for people (title bar, banner)."""
        return self.location if self.remote else str(self.data_dir)

    @property
    def is_remote(self) -> bool:
        return self.remote is not None

    def point_at_local(self, data_dir: str | Path) -> None:
        """Manage the service of ``data_dir`` on this computer (reconnects)."""
        self._repoint(None)
        self.data_dir = Path(data_dir)
        self.location = str(protocol.socket_path(self.data_dir))
        self.start()

    def point_at_remote(self, host: str, port: int, token: str, fingerprint: str = "") -> None:
        """Manage the service on another computer through its TLS admin listener (reconnects)."""
        self._repoint((host, int(port)))
        self._token = token
        self.fingerprint = fingerprint
        self.location = f"{host}:{int(port)}"
        self.start()

    def trust(self, fingerprint: str) -> None:
        """The user accepted this certificate (trust on first use): connect again with it pinned."""
        self.fingerprint = fingerprint
        self.start()

    def _repoint(self, remote: tuple[str, int] | None) -> None:
        self.stop()
        old = self._socket
        self.remote = remote
        self._token = ""
        self.fingerprint = self.seen_fingerprint = ""
        self.last_error = ""
        self._socket = self._make_socket()
        old.deleteLater()

    def _make_socket(self) -> QLocalSocket | QSslSocket:
        sock: QLocalSocket | QSslSocket
        if self.remote is None:
            sock = QLocalSocket(self)
            sock.connected.connect(self._on_connected)
        else:
            sock = QSslSocket(self)
            config = sock.sslConfiguration()
            config.setProtocol(QSsl.SslProtocol.TlsV1_2OrLater)
            config.setPeerVerifyMode(QSslSocket.PeerVerifyMode.VerifyPeer)
            sock.setSslConfiguration(config)
            sock.encrypted.connect(self._on_encrypted)
            sock.sslErrors.connect(self._on_ssl_errors)
        sock.disconnected.connect(self._on_disconnected)
        sock.errorOccurred.connect(self._on_error)
        sock.readyRead.connect(self._on_ready_read)
        return sock

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
        """Send ``op``; exactly one of ``on_ok(result)`` / ``on_err(error)`` is called later.

        Only ops of the op table (core/ipc/ops.py) with its parameters are sent: anything else is
        refused here with the ``invalid`` error the service would answer."""
        try:
            check_params(op, params)
        except Invalid as refused:
            log.error("the console asked for an op the service does not have: %s", refused.message)
            if on_err is not None:   # (``refused`` is unbound after the except block: pass it in)
                QTimer.singleShot(0, self, lambda error=refused: on_err(error))
            return
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

    def _socket_up(self) -> bool:
        state = self._socket.state()
        if isinstance(self._socket, QSslSocket):
            return state == QAbstractSocket.SocketState.ConnectedState
        return state == QLocalSocket.LocalSocketState.ConnectedState

    def _socket_idle(self) -> bool:
        state = self._socket.state()
        if isinstance(self._socket, QSslSocket):
            return state == QAbstractSocket.SocketState.UnconnectedState
        return state == QLocalSocket.LocalSocketState.UnconnectedState

    def _try_connect(self) -> None:
        if self._stopped or self._socket_up():
            return
        if not self._socket_idle():
            self._socket.abort()     # a connect or close still hanging: start afresh
        if isinstance(self._socket, QSslSocket):
            assert self.remote is not None   # a TLS socket is made only for another computer
            host, port = self.remote
            self._buffer = b""
            self._socket.connectToHostEncrypted(host, port)
        else:
            self._socket.connectToServer(self.location)

    # -- remote: TLS and the token ---------------------------------------------------------------
    def _on_ssl_errors(self, errors: list) -> None:
        sock = self._socket
        if not isinstance(sock, QSslSocket):
            return
        self.seen_fingerprint = certificate_fingerprint(bytes(sock.peerCertificate().toDer().data()))
        if self.fingerprint and self.seen_fingerprint == self.fingerprint:
            sock.ignoreSslErrors()      # the certificate the user accepted (self-signed, other name)
            return
        details = "; ".join(e.errorString() for e in errors) or "not trusted"
        # Hold: no retry loop until the user has decided (``trust``) or gone elsewhere.
        self._stopped = True
        self._retry.stop()
        self.last_error = f"the server's certificate is not trusted ({details})"
        sock.abort()
        self.certificate_unknown.emit(self.seen_fingerprint, details)

    def _on_encrypted(self) -> None:
        sock = self._socket
        if isinstance(sock, QSslSocket) and not self.seen_fingerprint:
            self.seen_fingerprint = certificate_fingerprint(bytes(sock.peerCertificate().toDer().data()))
        req_id = next(self._ids)
        self._pending[req_id] = (lambda _r: self._on_connected(), self._on_login_refused)
        self._socket.write(protocol.request(req_id, "auth.login", {"token": self._token}))

    def _on_login_refused(self, error: MailError) -> None:
        if error.code != "forbidden":
            return   # the connection dropped meanwhile; the retry loop goes on
        self._stopped = True
        self._retry.stop()
        self.last_error = error.message
        self._socket.abort()
        self.auth_failed.emit(error.message)

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
        if not self._socket_up() or not self._is_connected:
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
        req_id = msg.get("id")
        callbacks = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if callbacks is None:
            return
        on_ok, on_err = callbacks
        if "error" in msg:
            if on_err is not None:
                on_err(from_dict(msg.get("error") or {}))
        elif on_ok is not None:
            on_ok(msg.get("result"))
