"""The one canonical spelling of names (core.names) and the rules that refuse look-alike domains
and mailbox names SMTP cannot address, each with its reason."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import Invalid
from core.names import canonical_address, canonical_domain, login_key, normalize_mailbox

FULL_WIDTH = "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45"          # ｅｘａｍｐｌｅ
MATH_BOLD = "\U0001d41e\U0001d431\U0001d41a\U0001d426\U0001d429\U0001d425\U0001d41e"   # 𝐞𝐱𝐚𝐦𝐩𝐥𝐞


@pytest.mark.parametrize("spelling", [
    "example.com", "EXAMPLE.COM", "example.com.", f"{FULL_WIDTH}.com", f"{MATH_BOLD}.com",
    f"{FULL_WIDTH}\uff0e\uff43\uff4f\uff4d", "example\u3002com", "Example\uff61COM.", " example.com ",
], ids=["plain", "upper", "trailing-dot", "full-width", "mathematical", "full-width-dot", "ideographic-dot",
        "half-width-dot", "spaces"])
def test_every_spelling_of_a_domain_has_one_canonical_form(spelling: str) -> None:
    assert canonical_domain(spelling) == "example.com"
    assert canonical_address(f"Alice@{spelling}") == "alice@example.com"
    assert login_key(f"ALICE@{spelling}") == "alice@example.com"


def test_login_keys_fold_what_is_no_address_too() -> None:
    assert login_key("ALICE") == login_key("alice") == "alice"
    assert login_key("\uff41\uff4c\uff49\uff43\uff45@example.com") == "alice@example.com"   # full-width local part
    assert login_key("bob@Not A Domain.") == "bob@not a domain"
    assert login_key("x\x00y") == "xy" and len(login_key("a" * 5000)) <= 320
    assert login_key(None) == ""


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_login_keys_are_stable(text: str) -> None:
    key = login_key(text)
    assert login_key(key) == key or "@" in text   # canonical: folding twice changes nothing


@pytest.mark.parametrize("name", [
    "\u0430\u0440\u0440\u04cf\u0435.com",         # аррӏе: all Cyrillic, looks like "apple"
    "\u0440\u0430\u0443\u0440\u0430\u04cf.com",   # раураӏ: "paypal"
    "\u03bf\u03ba.com",                           # οκ: Greek "ok"
    "mail.\u0455\u0441\u043e\u0440\u0435.org",     # ѕсоре: "scope" in a lower label
], ids=["apple", "paypal", "greek-ok", "third-level"])
def test_whole_script_lookalikes_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(Invalid, match="look like Latin ones: a look-alike"):
        canonical_domain(name)


@pytest.mark.parametrize("name,expected", [
    ("\u043f\u0440\u0438\u043c\u0435\u0440.com", "xn--e1afmkfd.com"),          # пример: real Cyrillic letters
    ("\u0440\u0430\u0443.\u0440\u0444", "xn--80a5ak.xn--p1ai"),                # under a Cyrillic TLD
    ("b\u00fccher.de", "xn--bcher-kva.de"),
], ids=["cyrillic-word", "cyrillic-tld", "latin-accent"])
def test_genuine_non_latin_names_are_accepted(name: str, expected: str) -> None:
    assert canonical_domain(name) == expected


def test_mixed_scripts_are_still_refused() -> None:
    with pytest.raises(Invalid, match="mixes scripts"):
        canonical_domain("p\u0430ypal.com")
    with pytest.raises(Invalid, match="mixes scripts"):
        canonical_domain(f"{FULL_WIDTH}\u0430.com")   # full-width Latin plus a Cyrillic a


@pytest.mark.parametrize("name,reason", [
    (".alice", "RFC 5321"),
    ("alice.", "RFC 5321"),
    ("al..ice", "RFC 5321"),
    ("al ice", "spaces"),
    ("al\tice", "control character"),
    ("al\x7fice", "control character"),
    ("a" * 65, "limit is 64"),
    ('"alice"', "may not contain"),
    ("al(ice)", "may not contain"),
], ids=["leading-dot", "trailing-dot", "double-dot", "space", "tab", "delete", "65-octets", "quoted",
        "comment"])
def test_mailbox_names_smtp_cannot_address_are_refused_with_the_reason(name: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        normalize_mailbox(name)


@settings(max_examples=400)
@given(st.text(max_size=70))
def test_every_accepted_mailbox_name_is_an_rfc5321_dot_string(name: str) -> None:
    import re
    try:
        canonical = normalize_mailbox(name)
    except Invalid as exc:
        assert exc.message
        return
    atext = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    assert re.fullmatch(rf"{atext}(\.{atext})*", canonical) and len(canonical.encode()) <= 64
