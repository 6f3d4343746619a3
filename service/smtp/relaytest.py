"""The open-relay self-test: the classic tricks tried against a running SMTP listener.

Each test sends MAIL FROM and RCPT TO for an outside address dressed up as something else, reads
the RCPT reply and RSETs; no message is ever sent (no DATA). A 2xx reply to RCPT means the
server would have relayed: the test fails. Run from this machine, so the client address is the
one the test connects from (often 127.0.0.1): if that address is in the relay networks, the
server *is* open to it, and the report says so.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from core.errors import Unavailable
from service.listeners import Listener
from service.smtp.policy import Directory

OUTSIDE = "relaytest.example.net"     # RFC 2606: a domain that is never anybody's
TIMEOUT = 15.0


@dataclass(frozen=True)
class RelayProbe:
    """One trick: its name, the envelope sender and the recipient as written on the wire."""

    name: str
    mail_from: str
    rcpt_to: str


def probes(local: str) -> list[RelayProbe]:
    """The tests, for a server whose local domain is ``local``."""
    victim = f"victim@{OUTSIDE}"
    sender = f"tester@{OUTSIDE}"
    return [
        RelayProbe("plain outside recipient", sender, f"<{victim}>"),
        RelayProbe("local sender to outside", f"postmaster@{local}", f"<{victim}>"),
        RelayProbe("null sender to outside", "", f"<{victim}>"),
        RelayProbe("percent hack", sender, f"<victim%{OUTSIDE}@{local}>"),
        RelayProbe("source route", sender, f"<@{local}:{victim}>"),
        RelayProbe("quoted local part", sender, f'<"{victim}"@{local}>'),
        RelayProbe("bang path", sender, f"<{OUTSIDE}!victim@{local}>"),
        RelayProbe("bang path, unqualified", sender, f"<{OUTSIDE}!victim>"),
        RelayProbe("quoted bang path", sender, f'<"{OUTSIDE}!victim"@{local}>'),
        RelayProbe("unqualified name", sender, "<victim>"),
        RelayProbe("percent hack, unqualified", sender, f"<victim%{OUTSIDE}>"),
        RelayProbe("address literal", sender, "<victim@[192.0.2.1]>"),
        RelayProbe("trailing dot", sender, f"<{victim}.>"),
        RelayProbe("upper case local domain in route", sender, f"<@{local.upper()}:{victim}>"),
    ]


async def _reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), TIMEOUT)).decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            raise ConnectionError("the server closed the connection")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            break
    try:
        code = int(lines[-1][:3])
    except ValueError:
        code = 0
    return code, " / ".join(lines)


async def _command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str) -> tuple[int, str]:
    writer.write(line.encode("utf-8") + b"\r\n")
    await writer.drain()
    return await _reply(reader)


async def run_relay_test(host: str, port: int, *, local_domain: str, helo: str) -> list[dict]:
    """Run every probe; one dict per probe: trick, mail_from, recipient, reply, relayed (bool) and
    verdict ('refused', 'RELAYED' or 'error')."""
    results: list[dict] = []
    reader = writer = None

    async def connect() -> None:
        nonlocal reader, writer
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), TIMEOUT)
        code, text = await _reply(reader)
        if code != 220:
            raise ConnectionError(f"greeting: {text}")
        code, text = await _command(reader, writer, f"EHLO {helo}")
        if code != 250:
            raise ConnectionError(f"EHLO: {text}")

    try:
        for probe in probes(local_domain):
            entry: dict = {"test": probe.name, "trick": probe.name, "mail_from": f"<{probe.mail_from}>",
                           "rcpt_to": probe.rcpt_to, "recipient": probe.rcpt_to}
            try:
                if writer is None or writer.is_closing():
                    await connect()
                assert reader is not None and writer is not None
                code, text = await _command(reader, writer, f"MAIL FROM:<{probe.mail_from}>")
                if code != 250:
                    entry.update(reply=text, verdict="refused")
                else:
                    code, text = await _command(reader, writer, f"RCPT TO:{probe.rcpt_to}")
                    entry.update(reply=text, verdict="RELAYED" if 200 <= code < 300 else "refused")
                    if code == 421:
                        writer.close()
                        writer = None
                if writer is not None:
                    await _command(reader, writer, "RSET")
            except (TimeoutError, OSError, ConnectionError) as exc:
                entry.update(reply=str(exc) or type(exc).__name__, verdict="error")
                if writer is not None:
                    writer.close()
                writer = None
            entry["relayed"] = entry.get("verdict") == "RELAYED"
            results.append(entry)
    finally:
        if writer is not None:
            with contextlib.suppress(Exception):
                assert reader is not None
                await _command(reader, writer, "QUIT")
            writer.close()
    return results


class RelaySelfTest:
    """The admin channel's relay.test: the probes against this server's own port 25 listener."""

    def __init__(self, *, listeners: Mapping[str, Listener], directory: Directory,
                 hostname: Callable[[], str]) -> None:
        self.listeners = listeners    # filled as the listeners are made
        self.directory = directory
        self.hostname = hostname

    async def run(self, target_host: str = "", port: int | None = None) -> list[dict]:
        """Try the classic open-relay tricks against a running SMTP listener (this server's port
        25 listener unless told otherwise) and report each."""
        listener = self.listeners.get("smtp")
        if not port:
            port = listener.bound_port if listener is not None else None
            if not port:
                raise Unavailable("The SMTP listener is not running; start it or give a port.")
        if not target_host:
            bound = listener.host if listener is not None else ""
            target_host = "127.0.0.1" if bound in ("", "0.0.0.0") else "::1" if bound == "::" else bound
        domains = sorted(await self.directory.local_domains())
        helo = self.hostname()
        local = domains[0] if domains else helo
        return await run_relay_test(target_host, int(port), local_domain=local, helo=helo)
