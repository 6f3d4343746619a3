"""Delivery status notifications (RFC 3464 in an RFC 6522 multipart/report): the non-delivery
report and the delay notice sent back to a sender. Pure functions: bytes in, bytes out."""
from __future__ import annotations

import email.utils
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

HEADERS_LIMIT = 64 * 1024   # RFC 6522 §3: the third part may be just the headers


@dataclass(frozen=True)
class RecipientStatus:
    """One recipient line of a report (RFC 3464 §2.3)."""

    address: str
    status: str               # "5.1.1", "4.4.1" ...
    diagnostic: str = ""      # the remote server's reply or our reason
    remote_mta: str = ""


def _rfc822_date(when: datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC))


def _clean(text: str) -> str:
    """One header line: no CR/LF from a remote reply may start a new header."""
    return " ".join(str(text).split())


def original_headers(message: bytes) -> bytes:
    """The header block of ``message`` (CRLF ends), bounded."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head[:HEADERS_LIMIT]


def build_report(*, reporting_mta: str, sender: str, recipients: list[RecipientStatus], original: bytes,
                 arrival: datetime, delayed: bool = False, retry_until: datetime | None = None,
                 now: datetime | None = None) -> bytes:
    """A complete report message (CRLF line ends) to ``sender`` about ``recipients``."""
    now = now or datetime.now(UTC)
    boundary = f"=_report_{secrets.token_hex(12)}"
    listed = "\r\n".join(f"    <{r.address}>: {_clean(r.diagnostic) or r.status}" for r in recipients)
    if delayed:
        subject = "Delayed Mail (still being retried)"
        human = (f"This is the mail system at {reporting_mta}.\r\n\r\n"
                 "Your message has not been delivered yet to the recipients below. The mail system\r\n"
                 "keeps trying"
                 + (f" until {_rfc822_date(retry_until)}" if retry_until else "")
                 + "; you do not need to send it again.\r\n\r\n" + listed + "\r\n")
    else:
        subject = "Undelivered Mail Returned to Sender"
        human = (f"This is the mail system at {reporting_mta}.\r\n\r\n"
                 "Your message could not be delivered to the recipients below. This is a permanent\r\n"
                 "error; the mail system has given up. The reasons follow each address.\r\n\r\n"
                 + listed + "\r\n")
    per_recipient = []
    for r in recipients:
        fields = [f"Final-Recipient: rfc822; {r.address}",
                  f"Action: {'delayed' if delayed else 'failed'}",
                  f"Status: {r.status}"]
        if r.remote_mta:
            fields.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            fields.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        fields.append(f"Last-Attempt-Date: {_rfc822_date(now)}")
        if delayed and retry_until is not None:
            fields.append(f"Will-Retry-Until: {_rfc822_date(retry_until)}")
        per_recipient.append("\r\n".join(fields))
    status_part = (f"Reporting-MTA: dns; {reporting_mta}\r\n"
                   f"Arrival-Date: {_rfc822_date(arrival)}\r\n\r\n" + "\r\n\r\n".join(per_recipient) + "\r\n")
    head = (f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
            f"To: <{sender}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {_rfc822_date(now)}\r\n"
            f"Message-ID: <{secrets.token_hex(16)}@{reporting_mta}>\r\n"
            "Auto-Submitted: auto-replied\r\n"      # RFC 3834 §5: never answered automatically
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
            "\r\n"
            "This is a MIME-encapsulated message.\r\n\r\n")
    body = (f"--{boundary}\r\n"
            "Content-Description: Notification\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n"
            + human + "\r\n"
            f"--{boundary}\r\n"
            "Content-Description: Delivery report\r\n"
            "Content-Type: message/delivery-status\r\n\r\n"
            + status_part + "\r\n"
            f"--{boundary}\r\n"
            "Content-Description: Undelivered message headers\r\n"
            "Content-Type: text/rfc822-headers\r\n\r\n")
    return (head + body).encode("utf-8") + original_headers(original) + f"\r\n--{boundary}--\r\n".encode()
