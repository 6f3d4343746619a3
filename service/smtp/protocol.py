"""The SMTP protocol of each listener: aiosmtpd's protocol (with this service's hooks) made with
the session limits and time limits, the replies to refused connections, and the 421 every open
session hears at shutdown."""
from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from typing import cast

from aiosmtpd.smtp import SMTP

from service.listeners import Refusal
from service.live_settings import LiveSettings
from service.smtp.aiosmtpd_hooks import SmtpProtocol, install_log_filter, set_log_level
from service.smtp.handler import SmtpHandler
from service.tls import TlsMaterial

IDENT = "POP3 Service ESMTP"
COMMAND_TIMEOUT = 300           # RFC 5321 §4.5.3.2.7: five minutes
# Per-connection command budgets (aiosmtpd's command_call_limit). MAIL/RCPT/DATA/RSET stay
# unlimited: one connection may carry thousands of messages.
CALL_LIMITS = {"AUTH": 10, "EHLO": 20, "HELO": 20, "NOOP": 50, "VRFY": 10, "EXPN": 10, "HELP": 10,
               "STARTTLS": 3, "*": 10**9}
# Total time limits against slow clients (issue 12) are the settings smtp_logon_timeout and
# smtp_transaction_timeout (core/catalog.py): aiosmtpd's COMMAND_TIMEOUT restarts with every byte,
# so a client trickling one byte a minute would otherwise stay for ever (aiosmtpd_hooks, hook 7).
REFUSALS = {
    Refusal.PAUSED: b"421 4.3.2 Service paused; try again later\r\n",
    Refusal.BUSY: b"421 4.3.2 Too many connections; try again later\r\n",
    Refusal.BUSY_ADDRESS: b"421 4.7.0 Too many connections from your address; try again later\r\n",
    Refusal.BANNED: b"421 4.7.0 Your address is blocked for a while after failed logons\r\n",
}
UNAVAILABLE = b"421 4.3.2 Service not available\r\n"


class SmtpProtocols:
    """Makes the aiosmtpd protocols of the SMTP listeners and remembers the open ones."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, settings: LiveSettings, tls: TlsMaterial,
                 hostname: Callable[[], str]) -> None:
        self.loop = loop
        self.settings = settings
        self.tls = tls
        self.hostname = hostname
        self._open: dict[str, weakref.WeakSet[SMTP]] = {}
        install_log_filter()

    def factory(self, name: str, handler: SmtpHandler) -> Callable[[], asyncio.BaseProtocol]:
        """A factory of protocols for the listener ``name`` (``smtp``, ``submission``, ``smtps``)
        whose sessions ``handler`` serves."""
        settings, tls = self.settings, self.tls
        sessions = self._open.setdefault(name, weakref.WeakSet())
        submission = name != "smtp"

        def make() -> SMTP:
            set_log_level(int(settings.get("logging")))
            transaction = float(settings.get("smtp_transaction_timeout"))
            protocol = SmtpProtocol(
                handler,
                data_size_limit=int(settings.get("max_message_size")),
                enable_SMTPUTF8=True,
                decode_data=False,
                hostname=self.hostname(),
                ident=IDENT,
                tls_context=tls.context() if (tls.available and name != "smtps") else None,
                timeout=COMMAND_TIMEOUT,
                # The handler decides where AUTH may happen (PLAIN/LOGIN only inside TLS when SPA
                # is required; the challenge-response mechanisms anywhere), so aiosmtpd's own
                # all-or-nothing TLS rule is off; it also hid AUTH on 465 (issue #281).
                auth_require_tls=False,
                auth_required=False,
                command_call_limit=CALL_LIMITS,
                loop=self.loop,
                # The total time limits: the first until the client logs on (submission) or
                # finishes a message (port 25), then one per message; 0 = none.
                first_limit=float(settings.get("smtp_logon_timeout")) if submission else transaction,
                transaction_limit=transaction,
                ends_at_logon=submission,
            )
            sessions.add(protocol)
            return protocol

        return make

    def refusal(self, reason: Refusal) -> bytes:
        """What a connection the listener refuses hears before it is closed."""
        return REFUSALS.get(reason, UNAVAILABLE)

    def goodbye(self, name: str, reply: bytes) -> None:
        """Say ``reply`` (a 421) to every open session of the listener ``name`` and close it
        (RFC 5321 §3.8)."""
        for protocol in list(self._open.get(name, ())):
            transport = cast(asyncio.WriteTransport | None, protocol.transport)
            if transport is None or transport.is_closing():
                continue
            with contextlib.suppress(Exception):
                transport.write(reply)
                transport.close()

    @property
    def listener_names(self) -> list[str]:
        """The listeners protocols were made for."""
        return list(self._open)
