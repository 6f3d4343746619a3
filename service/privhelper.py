"""The privileged helper of the ``local`` method: the one part of the service that keeps root.

Like Dovecot's auth worker. The service, started as root, starts it before it drops privileges
(``start_helper``: a socketpair, one end inherited by ``python -m service.privhelper --fd N``;
everything else is closed). The helper does only what core.auth.local.SystemAccounts does: PAM
checks, and creating, re-passwording and deleting accounts, each checked against AccountRules
here, never trusting the service. Frames are a 4-byte big-endian length and a JSON object:
request ``{"id", "op", "args"}``, answer ``{"id", "ok": true, "result"}`` or
``{"id", "ok": false, "code", "message"}``. Requests are served concurrently (PAM takes ~2 s to
refuse a password), and the service waits for an answer in a worker thread with a deadline.
The helper exits when the service's end of the channel closes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from itertools import count
from pathlib import Path
from typing import Any

from core.auth.local import Accounts, AccountState, SystemAccounts
from core.errors import Conflict, Forbidden, Invalid, MailError, NotFound, Unavailable

log = logging.getLogger("pop3svc.privhelper")

ROOT = Path(__file__).resolve().parent.parent
MAX_FRAME = 64 * 1024          # a request is a name, a password and a few words
MAX_IN_FLIGHT = 32             # concurrent requests served (the auth pool's size); more wait in the socket
TIMEOUTS = {"pam_check": 30.0, "describe": 10.0, "prepare": 90.0, "create": 90.0, "set_password": 90.0,
            "delete": 90.0}
_ERRORS = {cls.code: cls for cls in (Invalid, NotFound, Conflict, Forbidden, Unavailable)}


def _send(sock: socket.socket, lock: threading.Lock, message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=True).encode()
    with lock:
        sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _recv(sock: socket.socket) -> dict[str, Any] | None:
    """One frame, or None at the end of the channel; ValueError if it is not a bounded JSON object."""
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    (length,) = struct.unpack(">I", head)
    if length > MAX_FRAME:
        raise ValueError(f"a frame of {length} bytes")
    body = _recv_exact(sock, length)
    if body is None:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("a frame that is not an object")
    return message


# --- the helper process (root) -------------------------------------------------------------------

def _dispatch(accounts: Accounts, op: Any, args: Any) -> Any:
    """Run one request against SystemAccounts; each field is checked there (types, names, rules)."""
    if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
        raise Invalid("The request's arguments must be strings.")

    def a(key: str) -> str:
        return args.get(key, "")   # a missing field is an empty string, which every check refuses
    if op == "pam_check":
        return accounts.pam_check(a("name"), a("password"), a("service"))
    if op == "describe":
        return dataclasses.asdict(accounts.describe(a("name")))   # {exists, refusal} on the channel
    if op == "prepare":
        accounts.prepare()
        return None
    if op == "create":
        accounts.create(a("name"), a("comment"))
        return None
    if op == "set_password":
        accounts.set_password(a("name"), a("password"))
        return None
    if op == "delete":
        return accounts.delete(a("name"))
    raise Invalid(f"The helper has no operation {str(op)[:40]!r}.")


def serve(sock: socket.socket, accounts: Accounts) -> None:
    """Answer requests until the service closes its end."""
    lock = threading.Lock()
    slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)

    def answer(message: dict[str, Any]) -> None:
        req_id = message.get("id")
        try:
            reply = {"id": req_id, "ok": True, "result": _dispatch(accounts, message.get("op"), message.get("args"))}
        except MailError as exc:
            reply = {"id": req_id, "ok": False, "code": exc.code, "message": exc.message}
        except Exception:  # noqa: BLE001 - a bug must not end the helper; never echo the request
            log.exception("the privileged helper failed on %r", message.get("op"))
            reply = {"id": req_id, "ok": False, "code": "unavailable", "message": "The account helper failed; "
                     "see the service log."}
        finally:
            slots.release()
        try:
            _send(sock, lock, reply)
        except OSError:
            pass

    while True:
        try:
            message = _recv(sock)
        except (ValueError, UnicodeDecodeError) as exc:   # not the service speaking: stop
            log.error("the privileged helper got a malformed request (%s); stopping", exc)
            return
        except OSError:
            return
        if message is None:
            return
        slots.acquire()
        threading.Thread(target=answer, args=(message,), daemon=True, name="privhelper").start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.privhelper", description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the inherited end of the service's socketpair")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is for the service; the helper ends with its channel
    os.umask(0o022)        # /etc/pam.d and the account databases stay world-readable
    os.chdir("/")
    sock = socket.socket(fileno=args.fd)
    try:
        serve(sock, SystemAccounts())
    finally:
        sock.close()
    return 0


# --- the service's side --------------------------------------------------------------------------

class HelperClient(Accounts):
    """The service's end of the channel: blocking calls (from worker threads) with a deadline,
    answered by id so a slow PAM refusal holds up no other call. Has SystemAccounts' methods."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen | None = None) -> None:
        self._sock = sock
        self.process = process
        self._lock = threading.Lock()
        self._waiting: dict[int, Future] = {}
        self._ids = count(1)
        self._closed = False
        self._closing = False
        self._reader = threading.Thread(target=self._read, daemon=True, name="privhelper-reader")
        self._reader.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def _read(self) -> None:
        try:
            while True:
                message = _recv(self._sock)
                if message is None:
                    break
                req_id = message.get("id")
                future = self._waiting.pop(req_id, None) if isinstance(req_id, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
        except (OSError, ValueError):
            pass
        self._closed = True
        if not self._closing:
            log.error("the privileged account helper has stopped: local-account logons and account changes "
                      "fail until the service is restarted")
        for future in list(self._waiting.values()):
            if not future.done():
                future.set_exception(Unavailable("The privileged account helper has stopped; restart the service."))

    def call(self, op: str, **args: str) -> Any:
        """Send one request and wait for its answer; a refusal is raised as the MailError it was."""
        if self._closed:
            raise Unavailable("The privileged account helper has stopped; restart the service.")
        req_id = next(self._ids)
        future: Future = Future()
        self._waiting[req_id] = future
        try:
            _send(self._sock, self._lock, {"id": req_id, "op": op, "args": args})
            reply = future.result(TIMEOUTS.get(op, 30.0))
        except FutureTimeout:
            raise Unavailable(f"The privileged account helper did not answer '{op}' in time.") from None
        except OSError:
            raise Unavailable("The privileged account helper has stopped; restart the service.") from None
        finally:
            self._waiting.pop(req_id, None)
        if reply.get("ok"):
            return reply.get("result")
        error = _ERRORS.get(reply.get("code"), Unavailable)
        raise error(str(reply.get("message") or "The account helper refused."))

    # SystemAccounts' interface (core.auth.local.Accounts)
    def describe(self, name: str) -> AccountState:
        found = self.call("describe", name=name)
        return AccountState(exists=bool(found["exists"]), refusal=str(found["refusal"]))

    def pam_check(self, name: str, password: str, service: str) -> bool:
        return bool(self.call("pam_check", name=name, password=password, service=service))

    def prepare(self) -> None:
        self.call("prepare")

    def create(self, name: str, comment: str) -> None:
        self.call("create", name=name, comment=comment)

    def set_password(self, name: str, password: str) -> None:
        self.call("set_password", name=name, password=password)

    def delete(self, name: str) -> bool:
        return bool(self.call("delete", name=name))

    def close(self) -> None:
        """End the channel: the helper sees it closed and exits."""
        self._closing = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        if self.process is not None:
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_helper() -> HelperClient:
    """Start the helper as a child of this (root) process; call before dropping privileges."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.privhelper", "--fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), close_fds=True, cwd=ROOT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "PYTHONPATH": str(ROOT),
                 "PYTHONDONTWRITEBYTECODE": "1"})
    finally:
        theirs.close()
    return HelperClient(ours, process)


if __name__ == "__main__":
    raise SystemExit(main())
