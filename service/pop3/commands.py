"""The POP3 commands, one small coroutine per verb, and one command table per state.

RFC 1939 (the base protocol), RFC 2449 (CAPA, response codes), RFC 3206 ([SYS/*], [AUTH]),
RFC 2595 (STLS), RFC 5034 (AUTH). A client's mistake is a reply, never an exception.
"""
from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from core.auth import (
    Challenge,
    Failure,
    LogonRules,
    Success,
    check_apop,
    create_mechanism,
)
from core.auth.provider import PLAINTEXT_MECHANISMS
from core.errors import MailError, database_error
from core.model import MailboxRef
from service.pop3 import wire
from service.pop3.state import (
    LOG_MAXIMUM,
    LOG_MEDIUM,
    LOG_MINIMUM,
    TOO_LONG,
    SessionClosed,
    State,
)
from service.pop3.state import events as session_events

if TYPE_CHECKING:   # the session runs these commands: it imports this module
    from service.pop3.session import Pop3Session

log = logging.getLogger("service.pop3")

Command = Callable[["Pop3Session", str], Awaitable[None]]

# Reply texts used in more than one place (and by the tests).
PLAINTEXT_REFUSED = ("Plaintext logons are refused on an unencrypted connection: use STLS (or port 995) "
                     "or a secure mechanism (APOP, AUTH CRAM-MD5, SCRAM-SHA-256 or NTLM).")
TLS_REQUIRED = ("Logons are refused on an unencrypted connection: use STLS (or port 995) first; this server "
                "requires TLS for every logon.")
BAD_CREDENTIALS = "Invalid login name or password."
TEMPORARY = "Logon is temporarily unavailable; try again later."
IN_USE = "Another session is using this mailbox; try again when it has finished."
NO_SUCH_MESSAGE = "No such message."
TOO_MANY_BAD = "Too many bad commands; closing the connection."
ADDRESS_BANNED = "Too many failed logons from your address; try again later."
LOGIN_BANNED = "Too many failed logons for this login name; try again later."


# -- helpers ----------------------------------------------------------------------------------
def rules(session: Pop3Session) -> LogonRules:
    """The logon rules on this connection (SPA, TLS for every logon, trusted networks)."""
    return LogonRules.for_connection(session.server.settings.get, tls=session.tls,
                                     address=session.address)


def plaintext_allowed(session: Pop3Session) -> bool:
    """USER/PASS and AUTH PLAIN/LOGIN: only inside TLS when SPA is required (DESIGN §6)."""
    return rules(session).plaintext


def refusal_text(session: Pop3Session) -> str:
    """Why a logon is refused on this connection before any credential is looked at."""
    return PLAINTEXT_REFUSED if rules(session).any_logon else TLS_REQUIRED


def offered_mechanisms(session: Pop3Session) -> list[str]:
    return [m.upper() for m in rules(session).mechanisms(session.server.auth.provider)]


def bad(session: Pop3Session, text: str) -> None:
    """Answer a bad command; past the limit, end the session (STYLE: Dovecot hangs up after 20)."""
    session.bad_commands += 1
    if session.bad_commands >= int(session.server.settings.get("pop3_bad_commands")):
        session.log(LOG_MINIMUM, "too many bad commands, closing")
        session.server.counters.incr("pop3.bad_command_hangups")
        session.write(wire.err(TOO_MANY_BAD))
        session.close()
        return
    session.write(wire.err(text))


def message_number(session: Pop3Session, arg: str) -> tuple[int, object] | None:
    """Parse and look up a message-number argument, replying -ERR when there is none."""
    number = wire.parse_number(arg)
    if number is None:
        session.write(wire.err("A message number is required."))
        return None
    info = session.visible(number)
    if info is None:
        session.write(wire.err(NO_SUCH_MESSAGE))
        return None
    return number, info


def redacted(verb: str, arg: str) -> str:
    """A command as it may be logged: never a password, never an AUTH payload, and nothing of a
    line that is no command (the base64 a client sends after a refused AUTH, a stray password)."""
    if verb not in KNOWN_VERBS:
        return f"(not a command: {len(verb) + len(arg) + (1 if arg else 0)} characters, not logged)"
    if verb == "PASS":
        return "PASS ****"
    if verb == "AUTH":
        mech, _, initial = arg.strip().partition(" ")
        if mech.upper() not in _MECHANISM_NAMES:   # a payload sent in the mechanism's place
            return "AUTH ****"
        return f"AUTH {mech} ****" if initial else f"AUTH {mech}".rstrip()
    if verb == "APOP":
        return f"APOP {arg.strip().rpartition(' ')[0]} ****"
    return f"{verb} {arg}".rstrip()


async def finish_logon(session: Pop3Session, outcome: MailboxRef | Failure, login: str | None, how: str) -> None:
    """The common end of USER/PASS, APOP and AUTH: throttle, lock checks, session lock, maildrop."""
    server = session.server
    if isinstance(outcome, Failure):
        if outcome.temporary:
            session.log(LOG_MINIMUM, "logon (%s) for %s could not be checked: %s", how, login, outcome.reason)
            session.write(wire.err(TEMPORARY, "SYS/TEMP"))
            return
        server.counters.incr("pop3.logon_failures")
        session.log(LOG_MINIMUM, "logon (%s) failed for %s: %s", how, login or "?", outcome.reason)
        banned = await server.throttle.failure(session.address, login)
        await server.throttle.delay(session.address, login)
        if banned == "address":
            session.write(wire.err(ADDRESS_BANNED, "AUTH"))
            session.close()
            return
        session.write(wire.err(BAD_CREDENTIALS, "AUTH"))
        return
    ref = outcome
    await server.throttle.success(session.address, login or ref.address)
    if ref.locked or ref.domain_locked:
        what = "domain " + ref.domain if ref.domain_locked else "mailbox " + ref.address
        session.log(LOG_MINIMUM, "logon refused for %s: the %s is locked", ref.address, what)
        server.counters.incr("pop3.logons_refused_locked")
        session.write(wire.err(f"The {what} is locked by the administrator; mail is still delivered, but it "
                               "cannot be retrieved until the lock is removed.", "SYS/PERM"))
        return
    holder = server.locks.holder(session.id)
    try:
        acquired = await server.acquire_lock(ref.id, holder)
    except Exception as exc:
        refusal = database_error(exc)   # a busy database: one line, not a traceback per logon
        if refusal is None:
            log.exception("POP3 session %s: the session lock of %s could not be taken", session.id, ref.address)
        else:
            log.warning("POP3 session %s: the session lock of %s could not be taken: %s", session.id, ref.address,
                        refusal.message)
        session.write(wire.err("The mailbox cannot be opened right now; try again later.", "SYS/TEMP"))
        return
    if not acquired:
        session.log(LOG_MEDIUM, "logon refused for %s: mailbox in use", ref.address)
        server.counters.incr("pop3.logons_in_use")
        session.write(wire.err(IN_USE, "IN-USE"))
        return
    session.lock_holder, session.mailbox = holder, ref
    try:
        messages = await server.workers.run(server.store.list_messages, ref.id)
    except Exception as exc:
        log.error("POP3 session %s: the maildrop of %s cannot be read: %s", session.id, ref.address, exc)
        await session.release_lock()
        session.mailbox = None
        session.write(wire.err("The mailbox cannot be opened right now; try again later.", "SYS/TEMP"))
        return
    session.messages = messages
    session.total_octets = sum(m.size for m in messages)
    session.state = State.TRANSACTION
    server.counters.incr("pop3.logons")
    session.log(LOG_MEDIUM, "logged on (%s%s), %d messages, %d octets", how, ", TLS" if session.tls else "",
                len(messages), session.total_octets)
    session.write(wire.ok(f"{ref.address} has {len(messages)} messages ({session.total_octets} octets)"))


def refused_login(session: Pop3Session, login: str) -> bool:
    """Refuse a banned login name before checking anything."""
    if session.server.throttle.is_login_banned(login, session.address):
        session.log(LOG_MINIMUM, "logon refused for %s: the login name is banned", login)
        session.write(wire.err(LOGIN_BANNED, "AUTH"))
        return True
    return False


# -- AUTHORIZATION --------------------------------------------------------------------------
async def cmd_capa(session: Pop3Session, arg: str) -> None:
    """RFC 2449 §5: what is available in this state and on this connection."""
    # EXPIRE NEVER (RFC 2449 §6.7): the server never deletes mail by itself, so a client that
    # leaves mail on the server may rely on it staying there.
    caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER"]
    if session.state is State.AUTHORIZATION:
        if plaintext_allowed(session):
            caps.append("USER")
        mechanisms = offered_mechanisms(session)
        if mechanisms:
            caps.append("SASL " + " ".join(mechanisms))
        if not session.tls and session.server.tls.available:
            caps.append("STLS")
    caps.append("IMPLEMENTATION POP3-Service")
    session.write(wire.multiline(wire.ok("Capability list follows"), caps))


async def cmd_user(session: Pop3Session, arg: str) -> None:
    if not plaintext_allowed(session):
        session.write(wire.err(refusal_text(session), "AUTH"))
        return
    login = arg.strip()
    if not login:
        session.write(wire.err("USER needs a login name (the full e-mail address)."))
        return
    session.user = login
    session.write(wire.ok(f"Send the password for {login}"))   # says nothing about whether it exists


async def cmd_pass(session: Pop3Session, arg: str) -> None:
    login, session.user = session.user, None
    if login is None:
        session.write(wire.err("Give USER first."))
        return
    if not plaintext_allowed(session):
        session.write(wire.err(refusal_text(session), "AUTH"))
        return
    if refused_login(session, login):
        return
    server = session.server
    try:
        ref = await server.workers.run_auth(server.auth.provider.verify_password, login, arg)
    except MailError as exc:
        outcome: MailboxRef | Failure = Failure(exc.message, login, temporary=True)
    except Exception as exc:
        log.exception("POP3 session %s: password check failed", session.id)
        outcome = Failure(str(exc), login, temporary=True)
    else:
        outcome = ref if ref is not None else Failure("wrong password or unknown user", login)
    await finish_logon(session, outcome, login, "USER")


async def cmd_apop(session: Pop3Session, arg: str) -> None:
    """RFC 1939 §7: name and MD5(timestamp + secret); accepted everywhere (no password crosses)."""
    login, _, digest = arg.strip().rpartition(" ")
    if not session.timestamp:
        session.write(wire.err("APOP is not available with this server's authentication method."))
        return
    if not rules(session).challenge_response:
        session.write(wire.err(TLS_REQUIRED, "AUTH"))
        return
    if not login or len(digest) != 32:
        session.write(wire.err("Syntax: APOP name digest (32 hexadecimal digits)."))
        return
    session.user = None
    if refused_login(session, login):
        return
    server = session.server
    try:
        result = await server.workers.run_auth(check_apop, server.auth.provider, login, session.timestamp, digest)
    except Exception as exc:
        log.exception("POP3 session %s: APOP check failed", session.id)
        result = Failure(str(exc), login, temporary=True)
    outcome = result.principal if isinstance(result, Success) else result
    await finish_logon(session, outcome, login, "APOP")


async def cmd_auth(session: Pop3Session, arg: str) -> None:
    """RFC 5034: a SASL exchange in base64 lines; "*" cancels; "=" is an empty initial response."""
    server = session.server
    offered = offered_mechanisms(session)
    if not arg.strip():   # the RFC 1734 habit some clients keep: list the mechanisms
        session.write(wire.multiline(wire.ok("Supported mechanisms follow"), offered))
        return
    name, _, initial_text = arg.strip().partition(" ")
    name = name.upper()
    if name not in offered:
        if not rules(session).any_logon:
            session.write(wire.err(TLS_REQUIRED, "AUTH"))
        elif name in PLAINTEXT_MECHANISMS and not plaintext_allowed(session):
            session.write(wire.err(PLAINTEXT_REFUSED, "AUTH"))
        else:
            session.write(wire.err(f"Unsupported authentication mechanism {name[:40]}; CAPA lists those available."))
        return
    session.user = None
    initial: bytes | None = None
    if initial_text:
        initial = b"" if initial_text.strip() == "=" else _b64(initial_text.strip().encode("ascii", "replace"))
        if initial is None:
            session.write(wire.err("The initial response is not valid base64; authentication cancelled."))
            return
    try:
        mechanism = create_mechanism(name, server.auth.provider, hostname=server.settings.hostname)
        result = await server.workers.run_auth(mechanism.start, initial)
    except MailError as exc:
        session.write(wire.err(exc.message))
        return
    while isinstance(result, Challenge):
        session.write(b"+ " + base64.b64encode(result.data) + wire.CRLF)
        data = await _client_response(session)
        if data is None:
            return
        result = await server.workers.run_auth(mechanism.step, data)
    if isinstance(result, Success):
        if result.final:
            # RFC 5034 §4: additional data with success goes in a last challenge, answered empty.
            session.write(b"+ " + base64.b64encode(result.final) + wire.CRLF)
            if await _client_response(session) is None:
                return
        if refused_login(session, result.principal.address):
            return
        await finish_logon(session, result.principal, result.principal.address, f"AUTH {name}")
        return
    if result.login and refused_login(session, result.login):
        return
    await finish_logon(session, result, result.login, f"AUTH {name}")


async def _client_response(session: Pop3Session) -> bytes | None:
    """One base64 line of a SASL exchange; None (after replying) if cancelled or malformed."""
    line = await session.next_line()
    if line is None:
        return None
    if line is TOO_LONG:
        session.write(wire.err("The response is too long; authentication cancelled."))
        return None
    line = line.strip()
    if line == b"*":
        session.write(wire.err("Authentication cancelled."))
        return None
    data = _b64(line)
    if data is None:
        session.write(wire.err("The response is not valid base64; authentication cancelled."))
    return data


def _b64(text: bytes) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


async def cmd_stls(session: Pop3Session, arg: str) -> None:
    """RFC 2595 §4: switch to TLS; everything sent ahead of the handshake is dropped."""
    if session.tls:
        session.write(wire.err("This connection already uses TLS."))
        return
    if not session.server.tls.available:
        session.write(wire.err("TLS is not available on this server."))
        return
    session.write(wire.ok("Begin TLS negotiation now"))
    try:
        await session.start_tls()
    except SessionClosed:
        raise
    except Exception as exc:   # a failed handshake: the client's problem, the session is over
        if int(session.server.settings.get("logging")) >= LOG_MINIMUM:   # a reset flood: a count, not a line each
            session_events("tls failed", logging.WARNING, "pop3 %s %s: TLS negotiation failed: %s",
                           session.id, session.address, exc or type(exc).__name__)
        session.abort()
        raise SessionClosed() from None
    session.user = None       # RFC 2595 §4: forget what was learnt before TLS
    session.log(LOG_MEDIUM, "TLS started")


async def cmd_quit_authorization(session: Pop3Session, arg: str) -> None:
    session.write(wire.ok(f"{session.server.settings.hostname} POP3 Service signing off"))
    session.close()


# -- TRANSACTION ----------------------------------------------------------------------------
async def cmd_stat(session: Pop3Session, arg: str) -> None:
    count, size = session.totals()
    session.write(b"+OK %d %d\r\n" % (count, size))


async def cmd_list(session: Pop3Session, arg: str) -> None:
    if arg.strip():
        found = message_number(session, arg)
        if found:
            number, info = found
            session.write(b"+OK %d %d\r\n" % (number, info.size))  # type: ignore[attr-defined]
        return
    count, size = session.totals()
    deleted = session.deleted
    lines = [b"%d %d\r\n" % (i, m.size) for i, m in enumerate(session.messages, 1) if i - 1 not in deleted]
    session.write(b"+OK %d messages (%d octets)\r\n%b.\r\n" % (count, size, b"".join(lines)))


async def cmd_uidl(session: Pop3Session, arg: str) -> None:
    if arg.strip():
        found = message_number(session, arg)
        if found:
            number, info = found
            session.write(b"+OK %d %b\r\n" % (number, info.uidl.encode("ascii")))  # type: ignore[attr-defined]
        return
    deleted = session.deleted
    lines = [b"%d %b\r\n" % (i, m.uidl.encode("ascii")) for i, m in enumerate(session.messages, 1)
             if i - 1 not in deleted]
    session.write(b"+OK unique-id listing follows\r\n%b.\r\n" % b"".join(lines))


async def cmd_retr(session: Pop3Session, arg: str) -> None:
    found = message_number(session, arg)
    if found:
        await session.send_message(found[0], found[1])  # type: ignore[arg-type]


async def cmd_top(session: Pop3Session, arg: str) -> None:
    """RFC 1939 §7: the header, the blank line, and the first n lines of the body."""
    parts = arg.split()
    lines = wire.parse_number(parts[1]) if len(parts) == 2 else None
    if lines is None:
        session.write(wire.err("Syntax: TOP message-number lines."))
        return
    found = message_number(session, parts[0])
    if found:
        await session.send_message(found[0], found[1], body_lines=lines)  # type: ignore[arg-type]


async def cmd_dele(session: Pop3Session, arg: str) -> None:
    """Mark only: the message goes at QUIT (RFC 1939 §6)."""
    found = message_number(session, arg)
    if found:
        session.deleted.add(found[0] - 1)
        session.write(b"+OK message %d deleted\r\n" % found[0])


async def cmd_noop(session: Pop3Session, arg: str) -> None:
    session.write(wire.ok())


async def cmd_rset(session: Pop3Session, arg: str) -> None:
    session.deleted.clear()
    count, size = session.totals()
    session.write(wire.ok(f"maildrop has {count} messages ({size} octets)"))


async def cmd_quit_transaction(session: Pop3Session, arg: str) -> None:
    """RFC 1939 §6: the UPDATE state. Marked messages go in one transaction, then the lock."""
    session.state = State.UPDATE
    server, box = session.server, session.mailbox
    assert box is not None
    ids = [session.messages[i].id for i in sorted(session.deleted)]
    removed = 0
    if ids:
        try:
            removed = await server.workers.run(server.store.delete_messages, box.id, ids)
        except Exception as exc:
            log.error("POP3 session %s: deleting %d messages of %s failed: %s", session.id, len(ids), box.address,
                      getattr(database_error(exc), "message", exc))
            await session.release_lock()
            session.write(wire.err("Some deleted messages were not removed; they will be shown again.", "SYS/TEMP"))
            session.close()
            return
        server.counters.incr("pop3.messages_deleted", removed)   # the store's change hook tells the console
    session.log(LOG_MEDIUM, "quit: %d retrieved, %d deleted", session.retrieved, removed)
    # The lock goes before the answer, so a client that reconnects at once is not told [IN-USE].
    await session.release_lock()
    left = len(session.messages) - len(session.deleted)
    session.write(wire.ok(f"{box.address} signing off ({removed} messages deleted, {left} left)"))
    session.close()


# -- the tables -----------------------------------------------------------------------------
AUTHORIZATION: dict[str, Command] = {
    "CAPA": cmd_capa, "USER": cmd_user, "PASS": cmd_pass, "APOP": cmd_apop, "AUTH": cmd_auth,
    "STLS": cmd_stls, "QUIT": cmd_quit_authorization,
}
TRANSACTION: dict[str, Command] = {
    "CAPA": cmd_capa, "STAT": cmd_stat, "LIST": cmd_list, "RETR": cmd_retr, "DELE": cmd_dele,
    "NOOP": cmd_noop, "RSET": cmd_rset, "TOP": cmd_top, "UIDL": cmd_uidl, "QUIT": cmd_quit_transaction,
}
TABLES: dict[State, dict[str, Command]] = {State.AUTHORIZATION: AUTHORIZATION, State.TRANSACTION: TRANSACTION,
                                           State.UPDATE: {}}
KNOWN_VERBS = frozenset(AUTHORIZATION) | frozenset(TRANSACTION)
_MECHANISM_NAMES = frozenset({"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"})


async def dispatch(session: Pop3Session, line: object) -> None:
    """Run one command line in the current state."""
    if line is TOO_LONG:
        bad(session, f"Line too long (the limit is {wire.MAX_LINE} octets).")
        return
    parsed = wire.split_command(line)  # type: ignore[arg-type]
    if parsed is None:
        bad(session, "Unrecognised command.")
        return
    verb, arg = parsed
    if int(session.server.settings.get("logging")) >= LOG_MAXIMUM:
        session.log(LOG_MAXIMUM, "C: %s", redacted(verb, arg))
    handler = TABLES[session.state].get(verb)
    if handler is None:
        if verb in KNOWN_VERBS:
            bad(session, f"{verb} is not allowed in the {session.state.value.upper()} state.")
        else:
            bad(session, f"Unknown command {verb}.")
        return
    await handler(session, arg)
