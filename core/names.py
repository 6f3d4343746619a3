"""Validation of domain and mailbox names: the original's rules plus what keeps the mail root safe.

Every name that becomes a folder passes through here, so nothing can escape the mail root.
"""
from __future__ import annotations

import re
import unicodedata

from core.errors import Invalid

AUTH_METHODS = ("passwordfile", "local", "directory")

# The original's forbidden characters (Local and AD); the password file allowed '+'.
_FORBIDDEN_COMMON = set('@()/\\[]:;,"<>*=|?')
_FORBIDDEN_BY_METHOD = {
    "passwordfile": _FORBIDDEN_COMMON,
    "directory": _FORBIDDEN_COMMON | {"+"},
    "local": _FORBIDDEN_COMMON | {"+"},
}
# The original: 1-20 characters for local accounts (the SAM's limit), up to 64 for the password
# file and AD. On Linux a local account name may be as long as useradd allows: 32.
MAILBOX_MAX_LEN = {"passwordfile": 64, "directory": 64, "local": 32}
# What useradd accepts as an account name (shadow's is_valid_user_name, without --badname).
_ACCOUNT_NAME = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")
_MAILBOX_ALLOWED = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+$")
_DOT_STRING = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _script_of(ch: str) -> str:
    """A rough script name for ``ch`` from its Unicode name ('LATIN', 'CYRILLIC', ...)."""
    if ch.isascii():
        return "LATIN" if ch.isalpha() else "COMMON"
    name = unicodedata.name(ch, "")
    if not name or not ch.isalpha():
        return "COMMON"
    return name.split(" ")[0]


# Letters of other scripts that look like Latin ones (after lower-casing): a label written only
# in these is a whole-script look-alike of a Latin name, e.g. Cyrillic "аррӏе" for "apple" (UTS #39
# §4 "whole-script confusables"; browsers refuse such names the same way).
_LATIN_LOOKALIKES = {
    "CYRILLIC": set("аыԁсеһіјкӏоорԛѕԝхуъьҽпгѵѡ"),
    "GREEK": set("αεικνορτυχγηω"),
    "ARMENIAN": set("աբցհոռսվքօ"),
}
# Full stops that IDNA treats as label separators (RFC 3490 §3.1): ideographic, full-width, half-width.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def _fold(text: str) -> str:
    """NFKC and lower case: full-width and mathematical letters become plain ones (UAX #15)."""
    return unicodedata.normalize("NFKC", text).translate(_DOTS).lower()


def canonical_domain(name: str) -> str:
    """The one canonical form of a domain name: lower-case ASCII (IDNA), no trailing dot, after
    NFKC (so full-width or mathematical letters spell the same domain); Invalid says why not."""
    return normalize_domain(name)


def canonical_address(address: str, method: str = "passwordfile") -> str:
    """The one canonical spelling ``name@domain`` of a mailbox address (every logon, RCPT and
    admin lookup goes through here), or raise Invalid."""
    name, domain = split_address(address, method)
    return f"{name}@{domain}"


def login_key(login: str | None) -> str:
    """What the logon throttle counts failures against: the canonical address when ``login`` is
    one, else the login folded the same way (NFKC, lower case, no trailing dot), bounded."""
    text = str(login or "").strip()
    try:
        return canonical_address(text)
    except Invalid:
        pass
    folded = "".join(ch for ch in _fold(text) if not unicodedata.category(ch).startswith("C")).strip()
    local, at, domain = folded.rpartition("@")
    if at:
        try:
            folded = f"{local}@{normalize_domain(domain)}"
        except Invalid:
            folded = f"{local}@{domain.rstrip('.')}"
    return folded[:320]


def _whole_script_lookalike(label: str, script: str) -> bool:
    lookalikes = _LATIN_LOOKALIKES.get(script)
    letters = [ch for ch in label if ch.isalpha()]
    if not lookalikes or not letters:
        return False
    return all(ch in lookalikes for ch in letters)


def normalize_domain(name: str) -> str:
    """Return the canonical (lower-case ASCII, IDNA) form of a domain name, or raise Invalid."""
    if not isinstance(name, str) or not name.strip():
        raise Invalid("The domain name is empty. Type a fully qualified name such as example.com.")
    raw = name.strip()
    if _has_control(raw) or "\x00" in raw:
        raise Invalid("The domain name contains a control character; use letters, digits, '-' and '.'.")
    raw = _fold(raw)
    if raw.endswith("."):
        raw = raw[:-1]
    if "/" in raw or "\\" in raw or ".." in raw:
        raise Invalid(f"'{name}' is not a domain name: it may not contain '/', '\\' or '..'.")
    labels_in = raw.split(".")
    if len(labels_in) < 2:
        raise Invalid(f"'{name}' is not fully qualified: give at least two labels, such as example.com.")
    labels_out = []
    tld_scripts = {_script_of(ch) for ch in labels_in[-1]} - {"COMMON"}
    for label in labels_in:
        if not label:
            raise Invalid(f"'{name}' has an empty label; labels are separated by single dots.")
        if not label.isascii():
            scripts = {_script_of(ch) for ch in label} - {"COMMON"}
            if len(scripts) > 1:
                raise Invalid(
                    f"The label '{label}' mixes scripts ({', '.join(sorted(scripts))}): a look-alike "
                    "of another name. Type the name in one script."
                )
            script = next(iter(scripts), "")
            # A name under a TLD of the same script (пример.рф) is not imitating a Latin one.
            if tld_scripts != {script} and _whole_script_lookalike(label, script):
                raise Invalid(
                    f"The label '{label}' is written only in {script.title()} letters that look like Latin "
                    "ones: a look-alike of another name. Type the name in Latin letters."
                )
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise Invalid(f"The label '{label}' cannot be written in IDNA; check the spelling.") from None
        if not _LABEL.match(label):
            raise Invalid(
                f"The label '{label}' is not valid: use 1-63 letters, digits or '-', "
                "not starting or ending with '-'."
            )
        labels_out.append(label)
    if labels_out[-1].isdigit():
        raise Invalid(f"'{name}' looks like an address, not a domain name; give a name such as example.com.")
    result = ".".join(labels_out)
    if len(result) > 253:
        raise Invalid("The domain name is longer than 253 characters.")
    return result


def display_domain(ascii_name: str) -> str:
    """The Unicode form of a stored (IDNA) domain name, for people."""
    try:
        return ascii_name.encode("ascii").decode("idna")
    except UnicodeError:
        return ascii_name


def normalize_mailbox(name: str, method: str = "passwordfile") -> str:
    """Return the canonical (lower-case) form of a mailbox name for ``method``, or raise Invalid."""
    if not isinstance(name, str) or not name.strip():
        raise Invalid("The mailbox name is empty. Type a name such as alice.")
    if name != name.strip():
        raise Invalid("The mailbox name may not start or end with a space.")
    if "\x00" in name or _has_control(name):
        raise Invalid("The mailbox name contains a control character; use letters, digits, '.', '-' or '_'.")
    if "/" in name or "\\" in name:
        raise Invalid("Mailbox names may not contain '/' or '\\'.")
    if ".." in name or name.startswith(".") or name.endswith("."):
        raise Invalid("Mailbox names may not start or end with '.' or contain '..': mail could not be "
                      "addressed to them (RFC 5321 §4.1.2 dot-string).")
    if not name.isascii():
        raise Invalid(
            "Mailbox names must be ASCII: letters a-z, digits and . _ - (no accented or look-alike letters)."
        )
    forbidden = sorted(set(name) & _FORBIDDEN_BY_METHOD.get(method, _FORBIDDEN_COMMON))
    if forbidden:
        shown = " ".join(forbidden)
        raise Invalid(f"Mailbox names may not contain these characters: {shown}")
    if " " in name:
        raise Invalid("Mailbox names may not contain spaces: SMTP could not address them unquoted (RFC 5321 §4.1.2).")
    lowered = name.lower()
    if not _MAILBOX_ALLOWED.match(lowered):
        raise Invalid("Mailbox names may use letters, digits and . _ - ' ! # $ % & { } ~ ^ only.")
    limit = MAILBOX_MAX_LEN.get(method, 64)
    if len(lowered) > limit:
        raise Invalid(f"The mailbox name is {len(lowered)} characters long; the limit is {limit}.")
    # RFC 5321 §4.1.2 / §4.5.3.1.1: SMTP must be able to address the mailbox as a dot-string
    # local part of at most 64 octets (the rules above imply it; this is the last word).
    if not _DOT_STRING.fullmatch(lowered) or len(lowered.encode("utf-8")) > 64:
        raise Invalid(f"'{name}' cannot be written as the local part of an e-mail address (RFC 5321 "
                      "§4.1.2: atoms of letters, digits and ! # $ % & ' * + - / = ? ^ _ ` { | } ~ joined "
                      "by single dots, at most 64 octets).")
    if method == "local" and lowered[0] == "-":
        raise Invalid("With local accounts a mailbox name may not start with '-'.")
    if method == "local" and not _ACCOUNT_NAME.match(lowered):
        bad = " ".join(sorted(set(lowered) - set("abcdefghijklmnopqrstuvwxyz0123456789_.-")))
        raise Invalid(f"With local accounts the mailbox name is a system account name: letters, digits and "
                      f". _ - only (not {bad}).")
    if method == "local" and lowered.isdigit():
        raise Invalid("With local accounts a mailbox name may not be all digits (it would read as a user id).")
    return lowered


def split_address(address: str, method: str = "passwordfile") -> tuple[str, str]:
    """Split ``name@domain`` into its normalized mailbox and domain, or raise Invalid."""
    if not isinstance(address, str) or address.count("@") != 1:
        raise Invalid(f"'{address}' is not a mailbox address: write it as name@domain, such as alice@example.com.")
    local, domain = address.split("@")
    return normalize_mailbox(local, method), normalize_domain(domain)


def check_auth_method(method: str) -> str:
    """Validate an authentication method name (DESIGN §4)."""
    value = str(method).strip().lower()
    aliases = {"epf": "passwordfile", "password": "passwordfile", "ad": "directory", "ldap": "directory",
               "1": "local", "2": "directory", "3": "passwordfile"}
    value = aliases.get(value, value)
    if value not in AUTH_METHODS:
        raise Invalid(f"Unknown authentication method '{method}'; choose one of: {', '.join(AUTH_METHODS)}.")
    return value


def check_token_name(name: str) -> str:
    """A remote-administration token's name without surrounding spaces, or Invalid saying what a
    token name may be (core.tokens and the console's New Token dialog both ask here)."""
    name = str(name).strip()
    if not _TOKEN_NAME.fullmatch(name):
        raise Invalid("A token name is 1-64 letters, digits, spaces or . _ @ - (e.g. 'laptop of alice').")
    return name
