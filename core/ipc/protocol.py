"""Framing of the admin channel: one JSON object per line (DESIGN §3).

Request ``{"id", "op", "params"}``; response ``{"id", "result"}`` or
``{"id", "error": {"code", "message"}}`` (plus ``kind`` and ``hint`` when the error has them,
core.errors); event ``{"event", "data"}``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.catalog import DEFAULT_TCP_PORT
from core.errors import Invalid, MailError
from core.parsing import parse_host_port

SOCKET_NAME = "admin.sock"
MAX_LINE = 1024 * 1024            # one request; larger is refused
MAX_RESPONSE = 512 * 1024 * 1024  # one response (a domain of 100,000 mailboxes is ~25 MB)


def socket_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def request(req_id: int | str, op: str, params: dict[str, Any] | None = None) -> bytes:
    return encode({"id": req_id, "op": op, "params": params or {}})


def response(req_id: Any, result: Any) -> bytes:
    return encode({"id": req_id, "result": result})


def error(req_id: Any, code: str, message: str) -> bytes:
    return encode({"id": req_id, "error": {"code": code, "message": message}})


def refusal(req_id: Any, err: MailError) -> bytes:
    """The answer to a refused request: the error with its code, message, kind and hint."""
    return encode({"id": req_id, "error": err.to_dict()})


def event(name: str, data: Any) -> bytes:
    return encode({"event": name, "data": data})


def decode(line: bytes, *, limit: int = MAX_LINE) -> dict[str, Any]:
    """Parse one line; raise Invalid (with a clear text) if it is not a JSON object."""
    if len(line) > limit:
        raise Invalid(f"The message is longer than {limit // (1024 * 1024)} MiB.")
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"The request is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Invalid("The request must be a JSON object with 'id', 'op' and 'params'.")
    return obj


def split_host_port(text: str, default_port: int = DEFAULT_TCP_PORT) -> tuple[str, int] | None:
    """'mail.example.com', 'mail.example.com:9110', '[::1]:9110' → (host, port); None if not one."""
    try:
        return parse_host_port(text, default_port)
    except Invalid:
        return None
