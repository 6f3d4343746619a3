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

_Local = QLocalSocket.LocalSocketError
_Net = QAbstractSocket.SocketError
_NOT_RUNNING = "no service answers there: it is not running, or it runs with another data directory"
# What the banner and the error boxes say for a socket error: a sentence for people, never Qt's own
# errorString() ("QLocalSocket::connectToServer: Invalid name", "Connection refused").
LOCAL_SOCKET_ERRORS: dict[QLocalSocket.LocalSocketError, str] = {
    _Local.ConnectionRefusedError: "the service is not running (its admin socket is left from an earlier run)",
    _Local.PeerClosedError: "the service closed the connection",
    _Local.ServerNotFoundError: _NOT_RUNNING,
    _Local.SocketAccessError: "this account may not use the service's admin socket (administrators belong "
                              "to the pop3admin group; log off and on again after joining it)",
    _Local.SocketResourceError: "this computer is out of resources for another connection",
    _Local.SocketTimeoutError: "the service did not answer in time",
    _Local.DatagramTooLargeError: "a message to the service was too large",
    _Local.ConnectionError: "the connection to the service broke",
    _Local.UnsupportedSocketOperationError: "this system does not support the service's admin socket",
    _Local.UnknownSocketError: "the connection to the service failed for an unknown reason",
    _Local.OperationError: "the connection to the service was not ready",
}
REMOTE_SOCKET_ERRORS: dict[QAbstractSocket.SocketError, str] = {
    _Net.ConnectionRefusedError: "nothing accepts connections on that port: the service is not running there, "
                                 "or its remote administration is off (winpop set admin_tcp_port 9110)",
    _Net.RemoteHostClosedError: "the other computer closed the connection",
    _Net.HostNotFoundError: "no computer of that name was found (check the name, or use its IP address)",
    _Net.SocketAccessError: "this computer does not allow the console to open that connection",
    _Net.SocketResourceError: "this computer is out of resources for another connection",
    _Net.SocketTimeoutError: "the other computer did not answer in time (a firewall may drop the connection)",
    _Net.DatagramTooLargeError: "a message to the service was too large",
    _Net.NetworkError: "the network is not reachable from this computer",
    _Net.AddressInUseError: "the local address is in use",
    _Net.SocketAddressNotAvailableError: "the local address is not available",
    _Net.UnsupportedSocketOperationError: "this system does not support that kind of address",
    _Net.UnfinishedSocketOperationError: "the previous connection attempt had not finished",
    _Net.ProxyAuthenticationRequiredError: "the proxy asks for a user name and password",
    _Net.SslHandshakeFailedError: "the encrypted connection could not be set up (the other side may not speak "
                                  "TLS on that port)",
    _Net.ProxyConnectionRefusedError: "the proxy refused the connection",
    _Net.ProxyConnectionClosedError: "the proxy closed the connection",
    _Net.ProxyConnectionTimeoutError: "the proxy did not answer in time",
    _Net.ProxyNotFoundError: "the proxy was not found",
    _Net.ProxyProtocolError: "the proxy answered something unexpected",
    _Net.OperationError: "the connection was not ready",
    _Net.SslInternalError: "the encryption library failed on this computer",
    _Net.SslInvalidUserDataError: "the encryption settings are not valid",
    _Net.TemporaryError: "a temporary network error occurred; the console tries again",
    _Net.UnknownSocketError: "the connection failed for an unknown reason",
}


def socket_error_text(error: QLocalSocket.LocalSocketError | QAbstractSocket.SocketError) -> str:
    """A plain sentence for a socket error of the admin channel (local or remote)."""
    if isinstance(error, QAbstractSocket.SocketError):
        return REMOTE_SOCKET_ERRORS.get(error, REMOTE_SOCKET_ERRORS[_Net.UnknownSocketError])
    return LOCAL_SOCKET_ERRORS.get(error, LOCAL_SOCKET_ERRORS[_Local.UnknownSocketError])


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
        # True from point_at_local/point_at_remote until the first attempt on the new target ends:
        # the window shows "Connecting…" then, not the old target's "not reachable" banner.
        self.connecting = False
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
        self.data_dir = Path(data_dir)
        self._repoint(None, str(protocol.socket_path(self.data_dir)))
        self.start()

    def point_at_remote(self, host: str, port: int, token: str, fingerprint: str = "") -> None:
        """Manage the service on another computer through its TLS admin listener (reconnects)."""
        self._repoint((host, int(port)), f"{host}:{int(port)}")
        self._token = token
        self.fingerprint = fingerprint
        self.start()

    def trust(self, fingerprint: str) -> None:
        """The user accepted this certificate (trust on first use): connect again with it pinned."""
        self.fingerprint = fingerprint
        self.start()

    def _repoint(self, remote: tuple[str, int] | None, location: str) -> None:
        # The old connection ends on purpose: ``disconnected`` once more (even if the old target was
        # already down), with ``connecting`` set and the new target named, so the window says
        # "Connecting to …" instead of the old target's "not reachable" banner.
        old = self._socket
        old.blockSignals(True)         # its abort reports nothing: the drop below says it once
        self.connecting = True
        self._stopped = True
        self._retry.stop()
        old.abort()
        self.remote = remote
        self.location = location
        self._token = ""
        self.fingerprint = self.seen_fingerprint = ""
        self.last_error = ""
        self._announced_down = False
        self._drop_connection("The console is connecting to another server.")
        self._announced_down = False   # the new target's first failure is announced too
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
        """Disconnect and stop retrying (also ends a connection attempt the user gave up on)."""
        self._stopped = True
        self._retry.stop()
        self._socket.abort()
        self._end_connecting()
        self._drop_connection("The console closed the connection.")

    def _end_connecting(self) -> None:
        """The first attempt on a new target is over: its outcome is announced."""
        if self.connecting:
            self.connecting = False
            self._announced_down = False

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
        self.last_error = "the server's certificate is not trusted"
        sock.abort()   # ``connecting`` stays: the window waits for the answer to the question
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
        self.last_error = f"the token was refused: {error.message}"
        self._socket.abort()
        self._end_connecting()
        self._drop_connection(self._unavailable_text())
        self.auth_failed.emit(error.message)

    def _on_connected(self) -> None:
        self._buffer = b""
        self._retry_ms = RETRY_MS
        self.last_error = ""
        self._is_connected = True
        self.connecting = False
        self._announced_down = False
        # Subscribe first: events for changes committed after this line reach us, and our own
        # later requests are answered on the same ordered stream.
        self.request("events.subscribe", {}, None, lambda e: log.warning("subscribe failed: %s", e))
        self.connected.emit()

    def _on_error(self, error: QLocalSocket.LocalSocketError | QAbstractSocket.SocketError) -> None:
        if self._stopped:
            return   # our own abort (a switch, a stop, a question open): the reason is set already
        self.last_error = socket_error_text(error)
        # A failed connect reports the error while still "connecting"; a lost connection also
        # sends ``disconnected``. Either way the connection is gone: dropping twice is harmless.
        if not self._socket_up() or not self._is_connected:
            self._end_connecting()
            self._drop_connection(self._unavailable_text())
            self._schedule_retry()

    def _on_disconnected(self) -> None:
        if not self._stopped:
            self._end_connecting()
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
