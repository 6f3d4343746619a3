"""The catalog: every server property (DESIGN §4) and every listener of the service, declared once.

A setting has its name, kind, default, check, label, help, aliases, whether it is writable, whether
it is a secret (stored sealed, shown as "(set)"), and which listener a change restarts. A listener
has its name, protocol, default port, TLS mode, label, the setting that holds its port and its
command-line flag. The catalog is complete the moment it is imported: nothing registers later.
The service, ``winpop``, the console and the test double all read it; it imports no database
layer and no Qt, so the console may import it.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import Invalid, NotFound
from core.names import check_auth_method, normalize_domain
from core.parsing import (
    bind_address,
    host_port_text,
    ip_address,
    networks_text,
    one_line,
    optional_size,
    parse_dns_servers,
    parse_host_port,
    parse_ldap_urls,
    parse_networks,
    parse_rate,
    parse_routes,
    port,
    size,
    split_list,
    whole_number,
    yes_no,
)
from core.sealer import is_sealed

SECRET_SHOWN = "(set)"          # what settings.get and change events show for a stored secret


class Kind(enum.StrEnum):
    """What sort of value a setting holds (the console picks its editor and fallback check by it)."""

    CHOICE = "choice"
    NUMBER = "number"
    PORT = "port"
    YES_NO = "yes/no"
    TEXT = "text"
    PATH = "path"
    SIZE = "size"
    ADDRESS = "address"
    NETWORKS = "networks"
    HOST_PORT = "host:port"
    RATE = "rate"
    LIST = "list"
    SECRET = "secret"


class TlsMode(enum.StrEnum):
    """How a listener speaks TLS."""

    NONE = "none"
    STARTTLS = "starttls"      # plain first, upgraded by STLS / STARTTLS (RFC 2595, RFC 3207)
    IMPLICIT = "implicit"      # TLS from the first byte (RFC 8314)

    @property
    def shown(self) -> str:
        """As a mail client's account dialog names it."""
        return {"none": "no encryption", "starttls": "STARTTLS", "implicit": "SSL/TLS"}[self.value]


@dataclass(frozen=True)
class ListenerSpec:
    """One listener: where it listens by default, how it speaks TLS, and where its port is set."""

    name: str                      # pop3, pop3s, smtp, submission, smtps, admin_tcp
    protocol: str                  # pop3, smtp, admin
    default_port: int
    tls: TlsMode
    label: str                     # "POP3 over TLS"
    short: str                     # "POP3/TLS": in one-line summaries
    purpose: str                   # what it is for, as the setup wizard says it
    port_setting: str              # the setting that holds its port
    flag: str | None = None        # its command-line override (``--pop3s-port``), if any
    unprivileged_port: int | None = None   # what a service without the right to bind < 1024 uses

    @property
    def flag_dest(self) -> str | None:
        """The attribute argparse stores the flag in (``pop3s_port``)."""
        return self.flag[2:].replace("-", "_") if self.flag else None


# The port suggested for remote administration (admin_tcp_port, off by default; winpop --host's default).
DEFAULT_TCP_PORT = 9110

LISTENERS: dict[str, ListenerSpec] = {spec.name: spec for spec in (
    ListenerSpec("pop3", "pop3", 110, TlsMode.STARTTLS, "POP3", "POP3", "mail clients fetch mail (STARTTLS)",
                 "port", "--pop3-port", 1110),
    ListenerSpec("pop3s", "pop3", 995, TlsMode.IMPLICIT, "POP3 over TLS", "POP3/TLS",
                 "mail clients fetch mail (SSL/TLS)", "pop3s_port", "--pop3s-port", 1995),
    ListenerSpec("smtp", "smtp", 25, TlsMode.STARTTLS, "SMTP", "SMTP", "other mail servers deliver mail to you",
                 "smtp_port", "--smtp-port", 2525),
    ListenerSpec("submission", "smtp", 587, TlsMode.STARTTLS, "SMTP submission", "Submission",
                 "mail clients send mail (STARTTLS)", "submission_port", "--submission-port", 1587),
    ListenerSpec("smtps", "smtp", 465, TlsMode.IMPLICIT, "SMTP over TLS", "SMTP/TLS",
                 "mail clients send mail (SSL/TLS)", "smtps_port", "--smtps-port", 1465),
    ListenerSpec("admin_tcp", "admin", 0, TlsMode.IMPLICIT, "Remote administration", "Admin/TLS",
                 "consoles on other computers manage this server (TLS and a token)", "admin_tcp_port"),
)}
# The mail listeners: those the daemon starts from its port settings and command-line flags.
MAIL_LISTENERS: tuple[ListenerSpec, ...] = tuple(spec for spec in LISTENERS.values() if spec.protocol != "admin")
SMTP_PORTS = tuple(spec.default_port for spec in MAIL_LISTENERS if spec.protocol == "smtp")


@dataclass(frozen=True)
class SettingSpec:
    """One server property: its name, default, check, and whether changing it restarts listeners."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    label: str
    aliases: tuple[str, ...] = ()
    restart: str | None = None        # listener whose restart the change needs ("all", "tls"), or None
    writable: bool = True
    help: str = field(default="", compare=False)
    kind: Kind = Kind.TEXT
    secret: bool = False              # stored sealed with the server key, shown as "(set)"

    def describe(self) -> dict[str, Any]:
        """The setting as ``settings.describe`` tells the console about it."""
        return {"name": self.name, "label": self.label, "default": self.default, "help": self.help,
                "restart": self.restart, "writable": self.writable, "type": str(self.kind), "secret": self.secret}


# -- checks of single settings ---------------------------------------------------------------------
PAM_SERVICE_DEFAULT = "pop3-service"
DIRECTORY_TYPES = ("openldap", "ad")
KEYSTORES = ("keyring", "keyfile")


def _keystore(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in KEYSTORES:
        raise Invalid("The key store is 'keyring' (the system keyring) or 'keyfile' (a root-only file).")
    return text


def _pam_service(value: Any) -> str:
    text = one_line(value) or PAM_SERVICE_DEFAULT
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        raise Invalid(f"'{text}' is not a PAM service name; give the name of a file in /etc/pam.d, "
                      f"such as {PAM_SERVICE_DEFAULT}.")
    return text


def _ldap_urls(value: Any) -> str:
    return " ".join(parse_ldap_urls(value))


def _dn(value: Any) -> str:
    text = one_line(value)
    if text and "=" not in text:
        raise Invalid(f"'{text}' is not a distinguished name; write it as dc=example,dc=com.")
    return text


def _ca_file(value: Any) -> str:
    text = one_line(value)
    if text and not Path(text).is_absolute():
        raise Invalid(f"The CA file must be an absolute path, not '{text}'.")
    return text


def _directory_type(value: Any) -> str:
    text = one_line(value).lower()
    aliases = {"activedirectory": "ad", "active directory": "ad", "ldap": "openldap", "": "openldap"}
    text = aliases.get(text, text)
    if text not in DIRECTORY_TYPES:
        raise Invalid("The directory type is 'openldap' (any LDAP v3 server) or 'ad' (Active Directory).")
    return text


def _user_filter(value: Any) -> str:
    text = one_line(value)
    if not text:
        return ""
    if not (text.startswith("(") and text.endswith(")")) or text.count("(") != text.count(")"):
        raise Invalid(f"'{text}' is not an LDAP filter; "
                      "write one such as (&(objectClass=inetOrgPerson)(mail={address})).")
    try:
        text.format(address="a@b.c", name="a", domain="b.c")
    except (KeyError, IndexError, ValueError):
        raise Invalid("The filter may use only the placeholders {address}, {name} and {domain}.") from None
    return text


def _secret(value: Any) -> str:
    """A password to be sealed (the service seals it: Admin.settings_set), or an already sealed value."""
    text = "" if value is None else str(value)
    if not text or is_sealed(text):
        return text
    if "\x00" in text or "\n" in text or "\r" in text:
        raise Invalid("The password may not contain NUL or line breaks.")
    return text


def _networks_as_typed(value: Any) -> str:
    """A network list checked, kept as typed (the throttle allow-list has always been stored so)."""
    parse_networks(value)
    return ", ".join(split_list(value))


def _routes(value: Any) -> str:
    return ", ".join(f"{d}=" + " ".join(host_port_text(h, p) for h, p in t) for d, t in parse_routes(value).items())


def _dns_servers(value: Any) -> str:
    return ", ".join(host_port_text(h, p) for h, p in parse_dns_servers(value))


def _smarthost(value: Any) -> str:
    text = one_line(value)
    return host_port_text(*parse_host_port(text, 25)) if text else ""


def _rate(value: Any) -> str:
    """'100/hour', '20/min', '0' (no limit)."""
    text = str(value).strip().lower()
    if text in ("", "0", "none", "unlimited"):
        return "0"
    parse_rate(text)
    return text


def _mailbox_address(value: Any) -> str:
    """'' or name@domain (normalised); that the mailbox exists is checked when mail arrives."""
    text = one_line(value).strip()
    if not text:
        return ""
    local, at, domain = text.rpartition("@")
    if not at or not local or any(c in local for c in ' <>"\\@') or not local.isascii():
        raise Invalid(f"'{text}' is not a mailbox address; write name@domain, such as admin@example.com.")
    return f"{local.lower()}@{normalize_domain(domain)}"


def _admin_bind(value: Any) -> str:
    return ip_address(value, empty="0.0.0.0")


def _port_settings(listeners: Iterable[ListenerSpec]) -> tuple[SettingSpec, ...]:
    return tuple(SettingSpec(spec.port_setting, spec.default_port, port, f"{spec.label} port",
                             ("pop3port",) if spec.name == "pop3" else (), restart=spec.name, kind=Kind.PORT)
                 for spec in listeners)


def _number(name: str, default: int, lo: int, hi: int, label: str, unit: str = "", **kw: Any) -> SettingSpec:
    return SettingSpec(name, default, whole_number(lo, hi, unit), label, kind=Kind.NUMBER, **kw)


def _yes_no(name: str, default: bool, label: str, **kw: Any) -> SettingSpec:
    return SettingSpec(name, default, yes_no, label, kind=Kind.YES_NO, **kw)


# -- the settings ----------------------------------------------------------------------------------
_SERVER = (
    SettingSpec("auth", "passwordfile", check_auth_method, "Authentication method", ("authentication",),
                kind=Kind.CHOICE, help="passwordfile, local or directory; changeable only while no domain exists"),
    *_port_settings(MAIL_LISTENERS),
    SettingSpec("logging", 2, whole_number(0, 3), "Logging level", ("loglevel",), kind=Kind.CHOICE,
                help="0 None, 1 Minimum, 2 Medium, 3 Maximum"),
    SettingSpec("mailroot", "", one_line, "Root mail directory", ("mailroot_dir",), kind=Kind.PATH,
                help="the service moves to it at once; it never moves mail itself, so the folder must "
                     "already hold a copy of the existing mail (or no mailbox may hold mail)"),
    _yes_no("sparequired", True, "Require secure password authentication",
            help="no password in clear: plaintext logons only inside TLS. With local accounts or a "
                 "directory only plaintext logons exist (PAM and LDAP keep no reusable secret), so "
                 "this means TLS is required"),
    _yes_no("createuser", False, "Always create an associated user for new mailboxes"),
    SettingSpec("keystore", "keyfile", _keystore, "Server key store", writable=False, kind=Kind.CHOICE,
                help="where the key that encrypts password equivalents lives"),
    SettingSpec("hostname", "", one_line, "Server host name", help="empty: the machine's name"),
    SettingSpec("bind_address", "", bind_address, "Listen on address", restart="all", kind=Kind.ADDRESS,
                help="the IP address the mail listeners bind; empty: every address. 'python main.py service "
                     "--bind ADDR' overrides it for one run"),
    SettingSpec("default_quota", None, optional_size, "Default mailbox quota", kind=Kind.SIZE,
                help="bytes (or KB/MB/GB) for new mailboxes; 0 = none"),
    SettingSpec("max_message_size", 25 * 1024 * 1024, size, "Maximum message size", kind=Kind.SIZE),
    _number("idle_timeout", 600, 600, 86400, "Idle session timeout (s)", help="RFC 1939: at least 10 minutes"),
    _number("max_connections", 500, 1, 100000, "Maximum connections"),
    _number("max_connections_per_ip", 20, 1, 10000, "Maximum connections per address"),
    SettingSpec("admin_group", "", one_line, "Admin group", help="members may use the admin channel"),
    SettingSpec("tls_cert", "", one_line, "TLS certificate (PEM)", restart="tls", kind=Kind.PATH),
    SettingSpec("tls_key", "", one_line, "TLS private key (PEM)", restart="tls", kind=Kind.PATH),
)

_LOGON = (
    _yes_no("require_tls_logon", False, "Require TLS for every logon",
            help="1: no logon at all without TLS (STLS/995, STARTTLS/465), APOP, CRAM-MD5, SCRAM and "
                 "NTLM included: a captured exchange allows offline guessing of the password"),
    SettingSpec("trusted_networks", "", networks_text, "Networks trusted for plaintext logons", kind=Kind.NETWORKS,
                help="clients here may log on without TLS even when SPA or TLS is required "
                     "(e.g. 127.0.0.1 for a local webmail); comma-separated; empty: none"),
)

_POP3 = (
    _number("pop3_bad_commands", 20, 1, 1000, "POP3 bad command limit", "commands",
            help="unknown or malformed commands after which a session is ended (Dovecot: 20)"),
    _number("pop3_lock_lease", 120, 15, 3600, "POP3 mailbox lock lease (s)", "seconds",
            help="how long a mailbox lock outlives a crashed service node; renewed while the session lives"),
    _number("pop3_logon_timeout", 60, 1, 3600, "POP3 logon time limit (s)", "seconds",
            help="a client that has not logged on this long after connecting is disconnected, however slowly "
                 "it sends (slow-client attacks)"),
)

_THROTTLE = (
    SettingSpec("throttle_allow", "127.0.0.0/8, ::1", _networks_as_typed, "Logon throttling allow-list",
                kind=Kind.NETWORKS,
                help="addresses or networks never delayed or banned (default: loopback; add e.g. "
                     "192.168.1.0/24), comma-separated"),
    _number("throttle_failures", 10, 1, 10000, "Failed logons before a ban", "failures",
            help="per address and per login name, within the throttle window"),
    _number("throttle_window", 900, 10, 86400, "Failed logon window (s)", "seconds",
            help="failures older than this are forgotten"),
    _number("throttle_delay_ms", 500, 0, 60000, "First failed logon delay (ms)", "milliseconds",
            help="doubles with every further failure, up to 15 s"),
    _number("ban_duration", 900, 10, 30 * 86400, "Ban duration (s)", "seconds",
            help="how long an address or login name stays banned"),
)

_SMTP = (
    _number("smtp_logon_timeout", 60, 1, 3600, "SMTP submission logon time limit (s)", "seconds",
            help="on the submission ports (587, 465): a client that has neither logged on (AUTH) nor finished a "
                 "message this long after connecting is disconnected"),
    _number("smtp_transaction_timeout", 600, 1, 86400, "SMTP transaction time limit (s)", "seconds",
            help="on port 25 (and after a message on the submission ports without AUTH): the time a client has "
                 "to finish each message, counted from the connection or the end of the previous message"),
    SettingSpec("relay_networks", "", networks_text, "Networks allowed to relay", kind=Kind.NETWORKS,
                help="addresses or CIDR ranges that may send to other domains without AUTH; empty: none"),
    _yes_no("relay_authenticated", True, "Allow authenticated users to relay"),
    SettingSpec("smarthost", "", _smarthost, "Smart host", kind=Kind.HOST_PORT,
                help="host:port all outgoing mail goes through instead of the recipients' MX; empty: DNS"),
    SettingSpec("smarthost_user", "", one_line, "Smart host user name"),
    SettingSpec("smarthost_password", "", _secret, "Smart host password", kind=Kind.SECRET, secret=True,
                help="stored encrypted with the server key; shown as (set)"),
    SettingSpec("smtp_routes", "", _routes, "Static mail routes", kind=Kind.LIST,
                help="domain=host:port entries used instead of DNS MX for those domains"),
    SettingSpec("dns_servers", "", _dns_servers, "DNS servers for outgoing mail", kind=Kind.LIST,
                help="addresses (ip or ip:port) of the resolvers that look up MX records; empty: the system's"),
    _yes_no("quota_full_tempfail", True, "Full mailbox is a temporary failure",
            help="1: a full mailbox answers 452 4.2.2 (the sender retries); 0: 552 5.2.2 (bounce)"),
    _yes_no("sender_must_match", True, "Authenticated senders use their own address",
            help="MAIL FROM of an authenticated user must be that user's address"),
    _yes_no("from_must_match", True, "Authenticated senders' From: header is their own",
            help="the From: header of mail from an authenticated user must be that user's address "
                 "(checked only while the MAIL FROM rule above is on)"),
    _yes_no("reject_local_senders", True, "Refuse local senders on port 25 without AUTH",
            help="1: port 25 refuses a local domain as envelope sender from outside the relay networks"),
    SettingSpec("postmaster_mailbox", "", _mailbox_address, "Postmaster mailbox",
                help="local mailbox that receives postmaster@ every local domain (RFC 5321 §4.5.1); "
                     "empty: each domain's first mailbox"),
    SettingSpec("send_rate_limit", "200/hour", _rate, "Sending limit per user", kind=Kind.RATE,
                help="recipients per time for each authenticated user, such as 200/hour; 0: none"),
    _number("max_recipients", 100, 1, 100000, "Maximum recipients per message"),
    _number("smtp_error_budget", 20, 1, 1000, "Refused commands before hang-up"),
    _number("queue_retry_interval", 300, 1, 86400, "First retry after (s)",
            help="later retries back off, doubling up to an hour"),
    _number("queue_warn_after", 4 * 3600, 1, 30 * 86400, "Delay notice after (s)"),
    _number("queue_lifetime", 5 * 86400, 1, 60 * 86400, "Give up and bounce after (s)"),
    _number("queue_concurrency", 4, 1, 100, "Simultaneous outgoing deliveries"),
    _number("queue_lease", 900, 5, 86400, "Outgoing delivery lease (s)",
            help="how long a message being delivered stays with a service node that stopped answering "
                 "before another node takes it (several nodes); renewed while the delivery runs"),
)

_ADMIN_TCP = (
    SettingSpec("admin_tcp_port", 0, port, "Remote administration port (TLS)", restart="admin_tcp", kind=Kind.PORT,
                help=f"0 = off. Consoles on other computers connect here with a token "
                     f"(winpop token create NAME); e.g. {DEFAULT_TCP_PORT}"),
    SettingSpec("admin_tcp_bind", "0.0.0.0", _admin_bind, "Remote administration address", restart="admin_tcp",
                kind=Kind.ADDRESS,
                help="the address the remote administration listener binds (0.0.0.0: every IPv4 address)"),
)

_METHODS = (
    SettingSpec("pam_service", PAM_SERVICE_DEFAULT, _pam_service, "PAM service (local accounts)",
                help="the /etc/pam.d file logons are checked against; PAM falls back to 'other' when it is missing"),
    SettingSpec("ldap_urls", "", _ldap_urls, "Directory servers", kind=Kind.LIST,
                help="ldap:// or ldaps:// URLs, tried in order (failover), such as ldap://dc1.example.com ldap://dc2"),
    SettingSpec("ldap_type", "openldap", _directory_type, "Directory type", kind=Kind.CHOICE,
                help="openldap (OpenLDAP or any LDAP v3 server) or ad (Active Directory)"),
    _yes_no("ldap_starttls", True, "Use StartTLS on ldap:// URLs",
            help="1: upgrade ldap:// connections with StartTLS (ldaps:// is TLS from the start)"),
    SettingSpec("ldap_ca_file", "", _ca_file, "Directory CA certificates (PEM)", kind=Kind.PATH,
                help="the CA that signed the directory's certificate; empty: the system's CAs"),
    SettingSpec("ldap_base_dn", "", _dn, "Directory base DN",
                help="where users are searched, such as dc=example,dc=com"),
    SettingSpec("ldap_bind_dn", "", _dn, "Directory bind DN",
                help="the account the service searches (and creates users) with"),
    SettingSpec("ldap_bind_password", "", _secret, "Directory bind password", kind=Kind.SECRET, secret=True,
                help="stored encrypted with the server key; shown as (set)"),
    SettingSpec("ldap_user_filter", "", _user_filter, "Directory user filter",
                help="how a mailbox maps to an entry; placeholders {address}, {name}, {domain}. Empty: "
                     "(mail={address}) on OpenLDAP, (userPrincipalName={address}) on Active Directory"),
    SettingSpec("ldap_user_container", "", _dn, "Directory container for new users",
                help="where 'create associated user' adds entries; empty: the base DN"),
    _number("ldap_page_size", 500, 1, 10000, "Directory page size",
            help="entries per page when the service lists the directory"),
    _number("ldap_timeout", 5, 1, 120, "Directory timeout (s)",
            help="after this a directory server counts as unreachable and the next one is tried"),
    _number("ldap_bind_cache_seconds", 0, 0, 3600, "Cache successful directory logons (s)",
            help="0: off. Otherwise a successful logon is remembered (as a salted hash) for this long"),
)

SETTINGS: dict[str, SettingSpec] = {spec.name: spec for spec in (
    *_SERVER, *_LOGON, *_POP3, *_THROTTLE, *_SMTP, *_ADMIN_TCP, *_METHODS)}
SECRET_SETTINGS = frozenset(name for name, spec in SETTINGS.items() if spec.secret)
# The settings of the ``local`` and ``directory`` methods: a change rebuilds the auth provider.
METHOD_SETTINGS = tuple(spec.name for spec in _METHODS)


def resolve(name: str) -> SettingSpec:
    """Find a setting by name or alias (case-insensitive)."""
    key = str(name).strip().lower()
    if key in SETTINGS:
        return SETTINGS[key]
    for spec in SETTINGS.values():
        if key in spec.aliases:
            return spec
    known = ", ".join(sorted(SETTINGS))
    raise NotFound(f"There is no setting '{name}'. Known settings: {known}.")


def is_secret(name: str) -> bool:
    """Is ``name`` (a name or alias) a secret setting? Unknown names are not."""
    try:
        return resolve(name).secret
    except NotFound:
        return False


def shown(name: str, value: Any) -> Any:
    """A setting's value as ``settings.get`` and change events show it: secrets as ``(set)``."""
    if is_secret(name):
        return SECRET_SHOWN if value else ""
    return value


def listener_of_port_setting(name: str) -> ListenerSpec | None:
    """The listener whose port ``name`` sets, if it is a port setting."""
    return next((spec for spec in LISTENERS.values() if spec.port_setting == name), None)



def port_in_use_note(name: str, stored: Any, listeners: list[dict[str, Any]] | None) -> str:
    """For a listener's port setting: what this run really uses when a command-line override
    (``--pop3-port`` and friends) differs from the stored value; empty otherwise."""
    listener = listener_of_port_setting(name)
    if listener is None or listener.flag is None or listeners is None:   # only mail listeners have overrides
        return ""
    try:
        stored_port = int(stored)
    except (TypeError, ValueError):
        return ""
    for item in listeners:
        if item.get("name") == listener.name:
            try:
                used = int(item.get("port") or 0)
            except (TypeError, ValueError):
                return ""
            if used != stored_port:
                return (f"this run uses port {used} (set on the service's command line); the stored {stored_port} "
                        "applies when the service starts without it")
            return ""
    if stored_port:
        return "this run has no such listener (turned off on the service's command line)"
    return ""
