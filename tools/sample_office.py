"""A small office's mail on a real running service, made the way it is made in real life: domains and
mailboxes over the admin channel, mail delivered over SMTP (smtplib), some of it fetched over POP3
(poplib), a message for another company stuck in the outgoing queue with a real error, and bans
earned by real failed POP3 logons; then, for the status page's charts, a few minutes of ordinary
traffic (busy_minute) that the service's per-minute history records as the minutes end.
tools/screenshots.py photographs the result."""
from __future__ import annotations

import contextlib
import poplib
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from core.ipc.client import AdminClient
from core.ipc.ops import STATS_SERIES
from tools.real_service import RealService, free_port, wait_until

PASSWORD = "Spring-Meadow-42"   # every sample mailbox's password (the service's password rule accepts it)

CONTOSO = {
    "contoso.com": ("administrator", "alice", "bob", "helpdesk", "info", "sales", "webmaster"),
    "fabrikam.com": ("anna", "diego", "orders"),
    "lab.contoso.com": ("build", "test"),
    "northwind.local": ("archive",),
}
FABRIKAM = {
    "fabrikam.com": ("jane", "john"),
    "fabrikam.net": ("orders",),
}
LOCKED_DOMAIN = "northwind.local"
LOCKED_MAILBOX = "sales@contoso.com"
QUOTA_MAILBOX, QUOTA = "helpdesk@contoso.com", "50 MB"
PARTNER_DOMAIN = "tailspintoys.com"     # its route points at a port nobody listens on: mail for it waits
OFFICE_MANAGER_TOKEN = "laptop of the office manager"

# (from, to, subject, body lines): what arrives from the outside on port 25.
INBOUND = (
    ("orders@tailspintoys.com", "alice@contoso.com", "Order 4711 confirmed", 12),
    ("newsletter@wingtiptoys.com", "alice@contoso.com", "March product news", 60),
    ("maria@litware.com", "alice@contoso.com", "Lunch on Thursday?", 3),
    ("accounts@woodgrovebank.com", "alice@contoso.com", "Your statement is ready", 25),
    ("it@litware.com", "alice@contoso.com", "Licence renewal", 18),
    ("support@adatum.com", "bob@contoso.com", "Ticket 8812: printer offline", 30),
    ("maria@litware.com", "bob@contoso.com", "Meeting notes", 80),
    ("orders@tailspintoys.com", "bob@contoso.com", "Invoice 2026-031", 40),
    ("alerts@adatum.com", "helpdesk@contoso.com", "Disk space warning on fs01", 8),
    ("alerts@adatum.com", "helpdesk@contoso.com", "Backup completed", 8),
    ("users@litware.com", "helpdesk@contoso.com", "Password reset request", 10),
    ("press@wingtiptoys.com", "info@contoso.com", "Interview request", 15),
    ("jobs@litware.com", "info@contoso.com", "Application: office assistant", 120),
    ("buyer@adatum.com", "sales@contoso.com", "Request for quotation", 35),
    ("buyer@adatum.com", "sales@contoso.com", "Re: Request for quotation", 20),
    ("monitor@litware.com", "webmaster@contoso.com", "www.contoso.com is up again", 4),
    ("partner@tailspintoys.com", "anna@fabrikam.com", "Shipping schedule", 22),
    ("partner@tailspintoys.com", "orders@fabrikam.com", "Purchase order 88", 45),
    ("ci@litware.com", "build@lab.contoso.com", "Nightly build passed", 50),
    ("ci@litware.com", "test@lab.contoso.com", "Nightly test report", 200),
    ("records@adatum.com", "archive@northwind.local", "Quarterly archive", 150),
)
REMOTE_INBOUND = (
    ("alice@contoso.com", "jane@fabrikam.com", "Lunch on Thursday", 3),
    ("orders@tailspintoys.com", "orders@fabrikam.net", "Order 9001", 14),
)
FAILED_LOGONS = (   # (source address, login): 3 failures make a ban (the throttle_failures set below)
    ("127.0.0.23", "admin"), ("127.0.0.23", "root"), ("127.0.0.23", "test"),
    ("127.0.0.41", "administrator@contoso.com"), ("127.0.0.42", "administrator@contoso.com"),
    ("127.0.0.43", "administrator@contoso.com"),
)

# A few minutes of an office's day, for the status page's charts: per minute (inbound deliveries on port
# 25, POP3 sessions, failed logons from addresses that try once, messages to the partner company's server).
# Every minute also queues one message for the partner whose server is down. Minute n uses row n % 4:
# the bars differ from minute to minute.
BUSY_MINUTES = ((6, 3, 1, 2), (11, 5, 2, 1), (3, 2, 1, 3), (8, 4, 3, 1))
POP3_CLIENTS = ("alice@contoso.com", "bob@contoso.com", "helpdesk@contoso.com", "info@contoso.com",
                "webmaster@contoso.com")
# What a password scanner tries, each login and each address once: no ban comes of it.
SCANNED_LOGINS = ("office", "postmaster", "user", "guest", "support", "mail", "scanner", "backup", "oracle",
                  "ftp", "marketing", "reception")


@dataclass
class Office:
    """What the filling made that the pictures need again."""

    token: str = ""                 # the admin token of the remote administration listener
    fingerprint: str = ""           # its certificate's SHA-256 fingerprint
    admin_port: int = 0


def _tls() -> ssl.SSLContext:
    # The service's certificate is self-signed and freshly made: this is a sample, not a trust decision.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _message(sender: str, recipient: str, subject: str, lines: int, n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, recipient, subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    paragraph = (f"Message {n} for {recipient}. The quick brown fox jumps over the lazy dog while the office "
                 "printer warms up and the coffee machine hums along in the kitchen.")
    msg.set_content("Hello,\n\n" + "\n".join(paragraph for _ in range(lines)) + "\n\nBest regards\n")
    return msg


def deliver_inbound(service: RealService, messages: tuple[tuple[str, str, str, int], ...]) -> None:
    """Mail from other companies' servers: plain SMTP on the inbound (port 25) listener."""
    with smtplib.SMTP("127.0.0.1", service.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("mx1.example.net")
        for n, (sender, recipient, subject, lines) in enumerate(messages, 1):
            smtp.send_message(_message(sender, recipient, subject, lines, n))


def fetch_some(service: RealService, address: str, *, keep: int) -> None:
    """A mail client fetches over POP3 with STLS: reads every message, deletes all but ``keep``."""
    client = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=30)
    try:
        client.stls(_tls())
        client.user(address)
        client.pass_(PASSWORD)
        count, _size = client.stat()
        for number in range(1, count + 1):
            client.retr(number)
            if number > keep:
                client.dele(number)
    finally:
        client.quit()


def submit(service: RealService, sender: str, recipient: str, subject: str) -> None:
    """A mail client sends: the submission listener, STARTTLS, AUTH as the sender."""
    with smtplib.SMTP("127.0.0.1", service.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=_tls())
        smtp.login(sender, PASSWORD)
        smtp.send_message(_message(sender, recipient, subject, 6, 1))


class _Pop3From(poplib.POP3):
    """poplib's client, connecting from a chosen local address (another "computer" on the loopback net)."""

    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=30)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def fail_logon(service: RealService, source: str, login: str) -> None:
    """One failed POP3 logon (USER/PASS inside STLS) from ``source``, an address of the loopback net."""
    client = _Pop3From(service.ports["pop3"], source)
    try:
        client.stls(_tls())
        client.user(login)
        with contextlib.suppress(poplib.error_proto):
            client.pass_("not-the-password")
    finally:
        with contextlib.suppress(poplib.error_proto, OSError):
            client.quit()


def make_domains(service: RealService, domains: dict[str, tuple[str, ...]]) -> None:
    for domain, names in domains.items():
        service.call("domain.add", name=domain)
        for name in names:
            service.call("mailbox.add", address=f"{name}@{domain}", password=PASSWORD)


def open_remote_administration(service: RealService, token_name: str, preferred_port: int) -> Office:
    """Turn on the TLS admin listener and make a token for it."""
    port = free_port(preferred_port)
    service.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    service.call("settings.set", name="admin_tcp_port", value=port)
    wait_until(lambda: service.call("server.info")["admin_tcp"]["state"] == "running", "the admin listener")
    token = service.call("admin.token_create", name=token_name)["token"]
    return Office(token=token, fingerprint=service.call("server.info")["tls"]["fingerprint"], admin_port=port)


def fill_contoso(service: RealService) -> Office:
    """mail.contoso.com: four domains, mail in and out, a locked domain and mailbox, a quota, a
    stuck outgoing message, two bans, and remote administration with a token that has been used."""
    service.call("settings.set", name="hostname", value="mail.contoso.com")
    service.call("tls.generate", hostname="mail.contoso.com")
    dead_port = free_port(10025)          # nothing listens there: delivery is refused, the message waits
    service.call("settings.set", name="smtp_routes", value=f"{PARTNER_DOMAIN}=127.0.0.1:{dead_port}")
    service.call("settings.set", name="throttle_allow", value="192.168.1.0/24")
    service.call("settings.set", name="throttle_failures", value=3)
    service.call("settings.set", name="throttle_delay_ms", value=0)
    make_domains(service, CONTOSO)
    service.call("mailbox.set_quota", address=QUOTA_MAILBOX, quota=QUOTA)
    deliver_inbound(service, INBOUND)
    fetch_some(service, "alice@contoso.com", keep=3)
    fetch_some(service, "bob@contoso.com", keep=3)
    submit(service, "alice@contoso.com", "bob@contoso.com", "Slides for Monday")
    submit(service, "bob@contoso.com", f"orders@{PARTNER_DOMAIN}", "Order 4712")
    wait_until(lambda: any(item["last_error"] for item in service.call("queue.list")["items"]),
               "the first delivery attempt of the queued message")
    service.call("mailbox.lock", address=LOCKED_MAILBOX)
    service.call("domain.lock", name=LOCKED_DOMAIN)
    for source, login in FAILED_LOGONS:
        fail_logon(service, source, login)
    wait_until(lambda: len(service.call("ban.list")["items"]) >= 2, "the bans")
    office = open_remote_administration(service, OFFICE_MANAGER_TOKEN, 9111)
    with AdminClient.over_tcp("127.0.0.1", office.admin_port, office.token, fingerprint=office.fingerprint) as remote:
        remote.call("stat")           # the office manager's laptop has used its token
    return office


def fill_fabrikam(service: RealService) -> Office:
    """mail.fabrikam.com: the other company's server, administered remotely from the Contoso console."""
    service.call("settings.set", name="hostname", value="mail.fabrikam.com")
    service.call("tls.generate", hostname="mail.fabrikam.com")
    make_domains(service, FABRIKAM)
    deliver_inbound(service, REMOTE_INBOUND)
    return open_remote_administration(service, "console of the Contoso office", 9110)


# -- a few busy minutes for the charts -----------------------------------------------------------------
def _deliverable(recipient: str) -> bool:
    """Not a locked mailbox or domain: the service refuses mail for those, as it should."""
    return recipient != LOCKED_MAILBOX and not recipient.endswith("@" + LOCKED_DOMAIN)


def route_to_partner(service: RealService, partner: RealService, domain: str) -> None:
    """Mail for ``domain`` goes to the partner company's real service (a static route beside the others):
    what the Contoso users send there is relayed, and counts as sent to other servers."""
    routes = str(service.call("settings.get", name="smtp_routes").get("smtp_routes") or "")
    entries = [entry for entry in routes.split(",") if entry.strip() and not entry.strip().startswith(domain + "=")]
    entries.append(f"{domain}=127.0.0.1:{partner.ports['smtp']}")
    service.call("settings.set", name="smtp_routes", value=", ".join(e.strip() for e in entries))


def busy_minute(service: RealService, n: int, partner_domain: str | None = None) -> None:
    """Minute ``n`` of the office's traffic (BUSY_MINUTES): mail arriving, mail clients fetching, logons
    failing, one message waiting for the partner whose server is down, and mail to ``partner_domain``
    (a route to another real service) when there is one."""
    inbound_count, sessions, failures, outbound = BUSY_MINUTES[n % len(BUSY_MINUTES)]
    inbound = [m for m in INBOUND if _deliverable(m[1])]
    deliver_inbound(service, tuple(inbound[(n * 5 + i) % len(inbound)] for i in range(inbound_count)))
    for i in range(sessions):
        fetch_some(service, POP3_CLIENTS[(n + i) % len(POP3_CLIENTS)], keep=5)
    tried = sum(BUSY_MINUTES[m % len(BUSY_MINUTES)][2] for m in range(n))   # the failures of minutes before
    for k in range(tried, tried + failures):
        fail_logon(service, f"127.0.0.{100 + k % 150}", SCANNED_LOGINS[k % len(SCANNED_LOGINS)])
    submit(service, "bob@contoso.com", f"orders@{PARTNER_DOMAIN}", f"Order {4713 + n}")
    if partner_domain:
        for i in range(outbound):
            submit(service, POP3_CLIENTS[(n + i) % 2], f"orders@{partner_domain}", f"Delivery note {n}-{i + 1}")


def minute_values(result: dict[str, Any], minute: int) -> dict[str, Any] | None:
    """The values of ``minute`` (epoch seconds // 60) in a stats.history answer, if it holds that minute
    as a full minute the service ran in; else None."""
    interval = int(result.get("interval") or 60)
    after = int(result.get("end") or 0) // interval          # the minute after the last full one
    series: dict[str, list[Any]] = result.get("series") or {}
    values = {name: column[minute - (after - len(column))] for name, column in series.items()
              if 0 <= minute - (after - len(column)) < len(column)}
    return values if minute < after and any(v is not None for v in values.values()) else None


def busy_minutes(service: RealService, count: int, partner_domain: str | None = None) -> int:
    """``count`` minutes of traffic, each waited for until the service's history holds it (stats.history
    records a minute as soon as it has ended); the number of the last one (epoch seconds // 60)."""
    minute = 0
    for n in range(count):
        minute = int(time.time() // 60)
        busy_minute(service, n, partner_domain)

        def recorded(m: int = minute) -> dict[str, Any] | None:
            return minute_values(service.call("stats.history", minutes=60), m)

        values = wait_until(recorded, f"minute {n + 1} of {count} in the service's history", 120.0, 0.5)
        print(f"minute {n + 1} of {count}: " + ", ".join(
            f"{STATS_SERIES[name].label.lower()} {value}" for name, value in values.items()
            if name in STATS_SERIES and STATS_SERIES[name].counted), flush=True)
    return minute
