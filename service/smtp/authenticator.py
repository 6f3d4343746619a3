"""SMTP AUTH (RFC 4954) over the core SASL mechanisms: which mechanisms a connection is offered,
and the exchange, with the login throttle.

Why the mechanisms are handler hooks (``auth_PLAIN`` ...), PLAIN and LOGIN included, rather than
aiosmtpd's ``authenticator``: aiosmtpd calls the authenticator synchronously on the event loop,
and a password check is PBKDF2, PAM or an LDAP bind that must run in a worker thread, with the
login throttle's delay awaited first.
"""
from __future__ import annotations

import base64
import binascii
import logging

from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from core.auth.mechanisms import Challenge, Failure, Success, create_mechanism
from core.auth.policy import LogonRules
from core.errors import Invalid
from service.auth_methods import AuthSource
from service.counters import Counters
from service.live_settings import LiveSettings
from service.smtp.aiosmtpd_hooks import uses_tls
from service.smtp.replies import AUTH_BAD, AUTH_BAD_BASE64, AUTH_OK, AUTH_TEMP, AUTH_TLS, AUTH_UNKNOWN
from service.smtp.session import client_ip, conversation
from service.throttle import LoginThrottle
from service.workers import Workers

log = logging.getLogger("service.smtp")

SASL_HOOKS = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "NTLM"}


class SaslAuthenticator:
    """AUTH on one listener: the mechanisms offered, and the exchange (checks in worker threads)."""

    def __init__(self, *, listener: str, settings: LiveSettings, auth: AuthSource, workers: Workers,
                 counters: Counters, throttle: LoginThrottle | None) -> None:
        self.listener = listener
        self.settings = settings
        self.auth = auth
        self.workers = workers
        self.counters = counters
        self.throttle = throttle

    def rules(self, server: SMTP) -> LogonRules:
        """The logon rules on this connection (SPA, TLS for every logon, trusted networks)."""
        return LogonRules.for_connection(self.settings.get, tls=uses_tls(server), address=client_ip(server.session))

    def mechanisms(self, server: SMTP) -> list[str]:
        """The mechanisms offered on this connection now (EHLO) and accepted (AUTH)."""
        return [m for m in self.rules(server).mechanisms(self.auth.provider) if m in SASL_HOOKS]

    def refusal(self, server: SMTP, mechanism: str) -> str | None:
        """The reply refusing AUTH ``mechanism`` on this connection, or None to go ahead."""
        mechanism = mechanism.upper()
        if mechanism in self.mechanisms(server):
            return None
        if mechanism in SASL_HOOKS and not uses_tls(server):
            # RFC 4954 §6: 538 when the mechanism would be accepted inside TLS.
            rules = self.rules(server)
            if not rules.any_logon or (mechanism in ("PLAIN", "LOGIN") and not rules.plaintext):
                return AUTH_TLS
        return AUTH_UNKNOWN

    async def authenticate(self, server: SMTP, name: str, args: list[str]) -> AuthResult:
        """Run the SASL exchange ``name`` (``args``: the AUTH command's words) with the client."""
        ip = client_ip(server.session)
        try:
            mechanism = create_mechanism(name, self.auth.provider, hostname=self.settings.hostname)
        except Invalid:
            await server.push(AUTH_UNKNOWN)
            return AuthResult(success=False, handled=True)
        initial: bytes | None = None
        if len(args) > 1:
            if args[1] == "=":
                initial = b""
            else:
                try:
                    initial = base64.b64decode(args[1], validate=True)
                except (binascii.Error, ValueError):
                    await server.push(AUTH_BAD_BASE64)
                    return AuthResult(success=False, handled=True)
        step = await self.workers.run_auth(mechanism.start, initial)
        while isinstance(step, Challenge):
            answer = await server.challenge_auth(step.data, encode_to_b64=True)
            if answer is MISSING:   # '*' or bad base64: aiosmtpd has replied already
                return AuthResult(success=False, handled=True)
            step = await self.workers.run_auth(mechanism.step, answer)
        throttle = self.throttle
        if isinstance(step, Success):
            who = step.principal
            if throttle is not None and throttle.is_login_banned(who.address, ip):
                step = Failure("login temporarily banned", who.address)
            else:
                if throttle is not None:
                    await throttle.success(ip, who.address)
                self.counters.incr("smtp_logons")
                log.info("smtp %s: %s authenticated as %s (%s)", self.listener, ip, who.address, name)
                if step.final:   # RFC 4954 §4: data sent with success goes in a 334, answered empty
                    final = await server.challenge_auth(step.final, encode_to_b64=True)
                    if final is MISSING:
                        return AuthResult(success=False, handled=True)
                return AuthResult(success=True, auth_data=who, message=AUTH_OK)
        assert isinstance(step, Failure)
        self.counters.incr("smtp_logon_failures")
        log.warning("smtp %s: failed logon from %s as %r (%s): %s", self.listener, ip, step.login or "",
                    name, step.reason)
        if step.temporary:
            return AuthResult(success=False, handled=False, message=AUTH_TEMP)
        if throttle is not None:
            await throttle.delay(ip, step.login)
            await throttle.failure(ip, step.login)
        if server.session is not None:
            conversation(server.session).errors += 1
        return AuthResult(success=False, handled=False, message=AUTH_BAD)
