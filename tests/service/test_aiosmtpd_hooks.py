"""The hooks into aiosmtpd's internals (service/smtp/aiosmtpd_hooks.py), one by one.

For each hook: a test that fails when aiosmtpd changes the internal it relies on (the attribute,
method and signature, or the behaviour of aiosmtpd it works around), and a test that the hook
still does its job, against a real protocol on 127.0.0.1. Upgrading aiosmtpd starts here.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import importlib.metadata
import inspect
import logging
import ssl
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiosmtpd.smtp as aiosmtpd_smtp
import pytest
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session, TLSSetupException

from service.smtp import aiosmtpd_hooks as hooks
from service.smtp.aiosmtpd_hooks import SmtpProtocol, attached, ehlo_lines, uses_tls
from service.smtp.data_reader import DATA_LINE_LIMIT
from service.smtp.replies import AUTH_LINE_TOO_LONG, STARTTLS_TWICE, TLS_FAILED
from service.tls import TlsMaterial
from tests.support import unverified_tls

ROOT = Path(__file__).resolve().parents[2]
PLAIN_PATHS = ["<a@b.c>", " <a@b.c> SIZE=10", "<a.b@c-d.e>  BODY=8BITMIME", "<x+tag@example.com>"]


# -- a protocol on a real socket, and a line client ---------------------------------------------

class Recorder:
    """A handler that records what the hooks under test hand it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.ehlo_responses: list[str] = []
        self.exceptions: list[Exception] = []

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname   # the 5-argument hook: aiosmtpd leaves this to the handler
        self.ehlo_responses = list(responses)
        return ehlo_lines(responses, mechanisms=["PLAIN", "CRAM-MD5"])

    async def handle_NOOP(self, server: SMTP, session: Session, envelope: Envelope, arg: str) -> str:
        return f"250 tls={uses_tls(server)}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(bytes(envelope.original_content or b""))
        return "250 2.0.0 recorded"

    async def handle_exception(self, error: Exception) -> str:
        self.exceptions.append(error)
        return "451 4.3.0 handler"

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return AuthResult(success=True, auth_data="handler's own PLAIN")

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        answer = await server.challenge_auth("<1.2@test>")
        if answer is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)


class Client:
    """Line in, reply out (a multi-line reply joined)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def send(self, line: bytes | str) -> str:
        self.writer.write((line.encode() if isinstance(line, str) else line) + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def starttls(self) -> None:
        assert (await self.send("STARTTLS")).startswith("220")
        await self.writer.start_tls(unverified_tls())


def serve(make: Callable[[asyncio.AbstractEventLoop], SMTP],
          scenario: Callable[[Client], Awaitable[Any]], *, ssl_context: ssl.SSLContext | None = None) -> Any:
    """Run ``scenario`` against a server of ``make``'s protocols; return what it returns."""
    async def run() -> Any:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: make(loop), "127.0.0.1", 0, ssl=ssl_context)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           ssl=unverified_tls() if ssl_context else None)
            client = Client(reader, writer)
            assert (await client.reply()).startswith("220 ")
            try:
                return await scenario(client)
            finally:
                writer.close()
        finally:
            server.close()
    return asyncio.run(run())


def protocol(handler: Any, **kwargs: Any) -> Callable[[asyncio.AbstractEventLoop], SMTP]:
    def make(loop: asyncio.AbstractEventLoop) -> SMTP:
        return SmtpProtocol(handler, hostname="server.test", ident="test", loop=loop, auth_require_tls=False,
                            **kwargs)
    return make


def params(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return TlsMaterial(tmp_path_factory.mktemp("tls"), "server.test")


# -- the pin ---------------------------------------------------------------------------------------

def test_the_installed_aiosmtpd_is_the_pinned_one() -> None:
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(p for p in pins if p.startswith("aiosmtpd"))
    assert pinned == f"aiosmtpd=={importlib.metadata.version('aiosmtpd')}" == "aiosmtpd==1.4.6"


def test_only_the_hooks_module_reaches_into_aiosmtpd() -> None:
    """Elsewhere: no subclass of SMTP, no underscore member of aiosmtpd's objects, no aiosmtpd
    logger, only its public names imported; and only service/smtp imports aiosmtpd at all."""
    public = {"MISSING", "SMTP", "AuthResult", "Envelope", "Session", "syntax", "TLSSetupException"}
    offenders = []
    for path in sorted((ROOT / "service").rglob("*.py")) + sorted((ROOT / "core").rglob("*.py")):
        name = str(path.relative_to(ROOT))
        if name == "service/smtp/aiosmtpd_hooks.py":
            continue
        text = path.read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aiosmtpd"):
                if not name.startswith("service/smtp/"):
                    offenders.append(f"{name}: imports aiosmtpd")
                offenders += [f"{name}: {a.name}" for a in node.names if a.name not in public]
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "SMTP" for b in node.bases):
                offenders.append(f"{name}: subclasses SMTP")
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in ("server", "session", "envelope")):
                offenders.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
        if "mail.log" in text:
            offenders.append(f"{name}: aiosmtpd's logger")
    assert offenders == []


# -- hook 1: line_length_limit ---------------------------------------------------------------------

def test_1_line_length_limit_is_the_stream_readers_limit() -> None:
    assert isinstance(SMTP.line_length_limit, int)
    assert "limit=self.line_length_limit" in inspect.getsource(SMTP.__init__)
    proto = SmtpProtocol(Recorder(), loop=asyncio.new_event_loop())
    assert proto._stream_reader._limit == hooks.READER_LIMIT > DATA_LINE_LIMIT


def test_1_long_lines_are_still_refused() -> None:
    async def scenario(client: Client) -> tuple[str, str]:
        long_command = await client.send("NOOP " + "x" * 2000)           # aiosmtpd's command_size_limit
        await client.send("EHLO client.test")
        await client.send("MAIL FROM:<a@client.test>")
        await client.send("RCPT TO:<b@server.test>")
        await client.send("DATA")
        too_long = await client.send(b"y" * 5000 + b"\r\n.")             # our reader's 1000 octets
        return long_command, too_long

    long_command, too_long = serve(protocol(Recorder()), scenario)
    assert long_command == "500 Command line too long"
    assert too_long == "500 Line too long (see RFC5321 4.5.3.1.6)"


# -- hooks 2 and 3: _getaddr -----------------------------------------------------------------------

def test_2_getaddr_is_what_the_fast_path_replaces() -> None:
    assert params(SMTP._getaddr) == ["self", "arg"]
    assert isinstance(SMTP.local_part_limit, int)
    reference, fast = SMTP(Recorder(), loop=asyncio.new_event_loop()), SmtpProtocol(Recorder())
    for path in PLAIN_PATHS:
        assert fast._getaddr(path) == reference._getaddr(path)
    assert hooks.PLAIN_PATH.fullmatch("<a@b.c>")


def test_2_plain_paths_skip_the_email_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    def parser_called(*_args: Any) -> Any:
        raise AssertionError("the email parser was used for a plain path")
    monkeypatch.setattr(aiosmtpd_smtp, "get_angle_addr", parser_called)
    assert SmtpProtocol(Recorder())._getaddr("<a@b.c> SIZE=10") == ("a@b.c", "SIZE=10")


def test_3_aiosmtpd_still_crashes_on_a_lone_angle_bracket() -> None:
    """If this fails, aiosmtpd parses "<" itself now and the guard may go."""
    with pytest.raises(Exception) as raised:
        SMTP(Recorder(), loop=asyncio.new_event_loop())._getaddr("<")
    assert not isinstance(raised.value, aiosmtpd_smtp.HeaderParseError)


def test_3_mail_from_angle_bracket_is_a_syntax_reply() -> None:
    async def scenario(client: Client) -> tuple[str, str]:
        await client.send("EHLO client.test")
        return await client.send("MAIL FROM:<"), await client.send("NOOP")

    recorder = Recorder()
    malformed, after = serve(protocol(recorder), scenario)
    assert malformed.startswith("553 ") and after == "250 tls=False"
    assert recorder.exceptions == []


# -- hook 4: smtp_DATA -----------------------------------------------------------------------------

def test_4_the_data_command_internals_are_there() -> None:
    assert params(SMTP._cb_client_connected) == ["self", "reader", "writer"]
    source = inspect.getsource(SMTP._cb_client_connected)
    assert "self._reader = reader" in source and "self._writer = writer" in source
    assert params(SMTP._call_handler_hook) == ["self", "command", "args"]
    assert params(SMTP._set_post_data_state) == ["self"]
    assert inspect.iscoroutinefunction(SMTP.check_helo_needed) and inspect.iscoroutinefunction(SMTP.check_auth_needed)
    assert SMTP.smtp_DATA.__smtp_syntax__ == "DATA"   # the @syntax decorator: HELP still lists it
    assert SmtpProtocol.smtp_DATA.__smtp_syntax__ == "DATA"


def test_4_data_is_read_unstuffed_and_pipelined_commands_follow() -> None:
    async def scenario(client: Client) -> list[str]:
        await client.send("EHLO client.test")
        await client.send("MAIL FROM:<a@client.test>")
        await client.send("RCPT TO:<b@server.test>")
        assert (await client.send("DATA")).startswith("354")
        client.writer.write(b"Subject: s\r\n\r\n..dot\r\n.\r\nNOOP\r\n")
        return [await client.reply(), await client.reply()]

    recorder = Recorder()
    assert serve(protocol(recorder), scenario) == ["250 2.0.0 recorded", "250 tls=False"]
    assert recorder.messages == [b"Subject: s\r\n\r\n.dot\r\n"]


# -- hook 5: the AUTH line limit ---------------------------------------------------------------------

def test_5_challenge_auth_reads_a_line_with_the_stream_reader() -> None:
    assert params(SMTP.challenge_auth) == ["self", "challenge", "encode_to_b64", "log_client_response"]
    assert "self._reader.readline()" in inspect.getsource(SMTP.challenge_auth)


def test_5_an_over_long_auth_answer_is_a_reply() -> None:
    async def scenario(client: Client) -> tuple[str, str, str]:
        await client.send("EHLO client.test")
        challenge = await client.send("AUTH CRAM-MD5")
        too_long = await client.send(b"A" * (hooks.READER_LIMIT + 100))
        return challenge, too_long, await client.send("NOOP")

    recorder = Recorder()
    challenge, too_long, after = serve(protocol(recorder), scenario)
    assert challenge.startswith("334 ") and too_long == AUTH_LINE_TOO_LONG and after == "250 tls=False"
    assert recorder.exceptions == []


# -- hook 6: one TLS layer ---------------------------------------------------------------------------

def test_6_starttls_is_a_command_method_for_the_tls_context() -> None:
    assert inspect.iscoroutinefunction(SMTP.smtp_STARTTLS) and params(SMTP.smtp_STARTTLS) == ["self", "arg"]
    assert SMTP.smtp_STARTTLS.__smtp_syntax_when__ == "tls_context"


def test_6_no_second_tls_layer(tls: TlsMaterial) -> None:
    async def after_starttls(client: Client) -> str:
        await client.send("EHLO client.test")
        await client.starttls()
        await client.send("EHLO client.test")
        return await client.send("STARTTLS")

    async def on_implicit_tls(client: Client) -> str:
        await client.send("EHLO client.test")
        return await client.send("STARTTLS")

    assert serve(protocol(Recorder(), tls_context=tls.context()), after_starttls) == STARTTLS_TWICE
    assert serve(protocol(Recorder()), on_implicit_tls, ssl_context=tls.context()) == STARTTLS_TWICE


# -- hook 7: total time limits -----------------------------------------------------------------------

def test_7_the_state_resets_it_follows() -> None:
    for name in ("_set_rset_state", "_set_post_data_state"):
        assert params(getattr(SMTP, name)) == ["self"]
    assert "self._set_post_data_state()" in inspect.getsource(SMTP._set_rset_state)
    for command in (SMTP.smtp_RSET, SMTP.smtp_EHLO, SMTP.smtp_HELO):
        assert "self._set_rset_state()" in inspect.getsource(command)
    assert "self._set_post_data_state()" in inspect.getsource(SMTP.smtp_DATA)
    assert params(SMTP.connection_made) == ["self", "transport"]
    assert params(SMTP.connection_lost) == ["self", "error"]


def test_7_a_client_that_only_chats_is_cut_off() -> None:
    async def scenario(client: Client) -> list[str]:
        replies = []
        for _ in range(30):   # RSET and NOOP buy no time
            reply = await client.send("RSET")
            replies.append(reply)
            if reply.startswith("421"):
                break
            await asyncio.sleep(0.05)
        return replies

    replies = serve(protocol(Recorder(), first_limit=0.3, transaction_limit=5.0), scenario)
    assert replies[-1] == hooks.TIME_LIMIT.decode().rstrip("\r\n") and len(replies) < 20


def test_7_a_finished_message_starts_the_transaction_limit() -> None:
    proto = SmtpProtocol(Recorder(), first_limit=5.0, transaction_limit=60.0, loop=asyncio.new_event_loop())
    proto._deadline_timer = proto.loop.call_later(5.0, lambda: None)
    proto._deadline = 0.0
    proto._set_rset_state()
    assert proto._deadline == 0.0                     # RSET/HELO/EHLO: no time bought
    proto._set_post_data_state()
    assert proto._deadline > proto.loop.time() + 50   # a message is finished
    proto._deadline_timer.cancel()


# -- hook 8: a broken-off STARTTLS handshake ---------------------------------------------------------

def test_8_exceptions_reach_handle_exception() -> None:
    assert inspect.iscoroutinefunction(SMTP.handle_exception) and params(SMTP.handle_exception) == ["self", "error"]
    assert "await self.handle_exception(error)" in inspect.getsource(SMTP._handle_client)
    assert issubclass(TLSSetupException, Exception)
    assert "raise TLSSetupException() from error" in inspect.getsource(SMTP.smtp_STARTTLS)


def test_8_a_failed_handshake_is_a_421_others_go_to_the_handler() -> None:
    recorder = Recorder()
    proto = SmtpProtocol(recorder, loop=asyncio.new_event_loop())
    proto.session = Session(proto.loop)
    proto.session.peer = ("192.0.2.1", 1234)
    assert asyncio.run(proto.handle_exception(TLSSetupException())) == TLS_FAILED
    assert recorder.exceptions == []
    assert asyncio.run(proto.handle_exception(RuntimeError("boom"))) == "451 4.3.0 handler"


def test_8_a_client_breaking_off_starttls_hears_421(tls: TlsMaterial) -> None:
    async def scenario(client: Client) -> str:
        await client.send("EHLO client.test")
        assert (await client.send("STARTTLS")).startswith("220")
        client.writer.write(b"this is no TLS client hello\r\n" * 20)
        return (await asyncio.wait_for(client.reader.read(), 10)).decode()

    recorder = Recorder()
    serve(protocol(recorder, tls_context=tls.context()), scenario)
    assert recorder.exceptions == []   # no traceback, not the handler's 451


# -- hook 9: auth methods of the handler --------------------------------------------------------------

def test_9_the_handlers_auth_methods_replace_the_builtin_ones() -> None:
    assert "for obj in (self, handler)" in inspect.getsource(SMTP.__init__)
    proto = SmtpProtocol(Recorder(), loop=asyncio.new_event_loop())
    assert proto._auth_methods["PLAIN"].is_builtin is False
    assert proto._auth_methods["LOGIN"].is_builtin is True      # the Recorder defines none
    assert proto._auth_methods["CRAM-MD5"].is_builtin is False  # auth_CRAM__MD5


def test_9_auth_plain_goes_to_the_handler() -> None:
    async def scenario(client: Client) -> str:
        await client.send("EHLO client.test")
        return await client.send("AUTH PLAIN " + base64.b64encode(b"\0a\0b").decode())

    assert serve(protocol(Recorder()), scenario) == "235 2.7.0 Authentication successful"


# -- hook 10: our state on aiosmtpd's Session and Envelope ---------------------------------------------

class _State:
    def __init__(self) -> None:
        self.count = 0


def test_10_session_and_envelope_take_an_attribute_and_are_made_afresh() -> None:
    loop = asyncio.new_event_loop()
    for carrier in (Session(loop), Envelope()):
        assert not hasattr(type(carrier), "__slots__")
        assert attached(carrier, _State) is attached(carrier, _State)
    assert attached(Session(loop), _State) is not attached(Session(loop), _State)
    proto = SmtpProtocol(Recorder(), loop=loop)
    proto._set_rset_state()        # as connection_made does
    first = proto.envelope
    assert first is not None
    attached(first, _State).count = 3
    proto._set_post_data_state()   # after each message: a new Envelope, so the state is new
    assert proto.envelope is not first and attached(proto.envelope, _State).count == 0
    assert params(SMTP._create_session) == ["self"] and params(SMTP._create_envelope) == ["self"]


# -- hook 11: uses_tls -------------------------------------------------------------------------------------

def test_11_starttls_replaces_the_transport() -> None:
    source = inspect.getsource(SMTP.smtp_STARTTLS)
    assert "self.transport = self._tls_protocol._app_transport" in source


def test_11_uses_tls_follows_starttls(tls: TlsMaterial) -> None:
    async def scenario(client: Client) -> tuple[str, str]:
        await client.send("EHLO client.test")
        before = await client.send("NOOP")
        await client.starttls()
        await client.send("EHLO client.test")
        return before, await client.send("NOOP")

    assert serve(protocol(Recorder(), tls_context=tls.context()), scenario) == ("250 tls=False", "250 tls=True")


def test_11_a_torn_down_tls_transport_is_no_tls() -> None:
    class TornDown:
        def get_extra_info(self, name: str) -> Any:
            raise AttributeError("'NoneType' object has no attribute 'get_extra_info'")

    proto = SmtpProtocol(Recorder(), loop=asyncio.new_event_loop())
    proto.transport = TornDown()  # type: ignore[assignment]
    assert uses_tls(proto) is False


# -- hook 12: the EHLO lines ---------------------------------------------------------------------------------

def test_12_the_ehlo_hook_gets_aiosmtpds_lines() -> None:
    proto = SmtpProtocol(Recorder(), loop=asyncio.new_event_loop())
    assert proto._ehlo_hook_ver == "new"   # the 5-argument hook: its list replaces aiosmtpd's
    source = inspect.getsource(SMTP.smtp_EHLO)
    assert "response.append('250 HELP')" in source and '"250-AUTH "' in source


def test_12_our_auth_line_replaces_aiosmtpds() -> None:
    async def scenario(client: Client) -> str:
        return await client.send("EHLO client.test")

    recorder = Recorder()
    lines = serve(protocol(recorder), scenario).splitlines()
    assert recorder.ehlo_responses[-1] == "250 HELP"
    assert any(r.startswith("250-AUTH ") for r in recorder.ehlo_responses)   # aiosmtpd's own
    assert [line for line in lines if "AUTH" in line] == ["250-AUTH PLAIN CRAM-MD5"]
    assert lines[-3:] == ["250-ENHANCEDSTATUSCODES", "250-PIPELINING", "250 HELP"]


# -- hook 13: aiosmtpd's log ---------------------------------------------------------------------------------

def test_13_aiosmtpd_logs_to_mail_log() -> None:
    assert aiosmtpd_smtp.log.name == hooks.AIOSMTPD_LOG
    assert "sanitized_log(log.info, '%r >> %r', self.session.peer, line)" in inspect.getsource(SMTP._handle_client)
    assert 'log.warning("%r unrecognised: %s", self.session.peer, command)' in inspect.getsource(SMTP._handle_client)
    assert hooks.LOGIN_DATA_WARNING in inspect.getsource(Session)


def test_13_the_log_keeps_commands_not_secrets(caplog: pytest.LogCaptureFixture) -> None:
    hooks.install_log_filter()
    hooks.install_log_filter()
    assert sum(isinstance(f, hooks.RedactAuth) for f in logging.getLogger(hooks.AIOSMTPD_LOG).filters) == 1
    caplog.set_level(logging.INFO, logger=hooks.AIOSMTPD_LOG)
    secret = base64.b64encode(b"\0alice\0Sesame-Secret-1").decode()

    async def scenario(client: Client) -> None:
        await client.send("EHLO client.test")
        await client.send("AUTH PLAIN " + secret)
        await client.send("Sesame-Secret-2")

    serve(protocol(Recorder()), scenario)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == hooks.AIOSMTPD_LOG)
    assert "EHLO client.test" in text and "AUTH PLAIN ***" in text and "(not a command:" in text
    assert secret not in text and "Sesame" not in text and "SESAME" not in text
    assert hooks.LOGIN_DATA_WARNING not in text


def test_13_the_log_level_follows_the_setting() -> None:
    logger = logging.getLogger(hooks.AIOSMTPD_LOG)
    before = logger.level
    try:
        for level, expected in ((0, logging.CRITICAL), (1, logging.WARNING), (3, logging.INFO)):
            hooks.set_log_level(level)
            assert logger.level == expected
    finally:
        logger.setLevel(before)
