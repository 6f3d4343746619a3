"""Name rules: nothing a name can hold escapes the mail root; the original's limits hold."""
from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import Invalid
from core.names import check_auth_method, normalize_domain, normalize_mailbox, split_address

ROOT = Path("/srv/mailroot")


def _inside_root(*parts: str) -> bool:
    import os
    joined = os.path.normpath(os.path.join(str(ROOT), *parts))
    return joined.startswith(str(ROOT) + "/") and joined.count("/") == str(ROOT).count("/") + len(parts)


@settings(max_examples=400)
@given(st.text(max_size=80))
def test_any_accepted_mailbox_name_stays_one_folder_inside_the_root(name):
    try:
        canonical = normalize_mailbox(name)
    except Invalid as exc:
        assert exc.message  # a refusal always says why
        return
    assert "/" not in canonical and "\\" not in canonical and "\x00" not in canonical
    assert ".." not in canonical and not canonical.startswith(".")
    assert canonical.isascii() and canonical == canonical.lower() and 1 <= len(canonical) <= 64
    assert normalize_mailbox(canonical) == canonical
    assert _inside_root("example.com", canonical)


@settings(max_examples=400)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=80))
def test_any_accepted_domain_is_lower_case_ldh_and_stays_inside_the_root(name):
    try:
        canonical = normalize_domain(name)
    except Invalid as exc:
        assert exc.message
        return
    allowed = set(string.ascii_lowercase + string.digits + "-.")
    assert set(canonical) <= allowed and "." in canonical and len(canonical) <= 253
    assert normalize_domain(canonical) == canonical
    assert _inside_root(canonical)


@settings(max_examples=200)
@given(st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=1, max_size=20))
def test_plain_names_are_accepted_case_insensitively(name):
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return
    assert normalize_mailbox(name) == name.lower()


@pytest.mark.parametrize("name,expected", [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("mail.example.co.uk", "mail.example.co.uk"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("ПРИМЕР.рф", "xn--e1afmkfd.xn--p1ai"),
], ids=["case", "trailing-dot", "third-level", "idna", "cyrillic-whole"])
def test_domain_canonical_forms(name, expected):
    assert normalize_domain(name) == expected


@pytest.mark.parametrize("name,message", [
    ("", "empty"),
    ("localhost", "fully qualified"),
    ("-bad.com", "not valid"),
    ("a..b.com", "'..'"),
    ("exa mple.com", "not valid"),
    ("1.2.3.4", "looks like an address"),
    ("p\u0430ypal.com", "mixes scripts"),
    ("x" * 250 + ".com", "not valid"),
], ids=["empty", "single-label", "leading-dash", "empty-label", "space", "ip", "lookalike", "too-long"])
def test_bad_domains_say_why(name, message):
    with pytest.raises(Invalid, match=message):
        normalize_domain(name)


@pytest.mark.parametrize("method,name,ok", [
    ("passwordfile", "a+b", True),        # the password file allowed '+'
    ("local", "a+b", False),
    ("directory", "a+b", False),
    ("local", "x" * 32, True),            # local accounts: as long as useradd allows (32)
    ("local", "x" * 33, False),
    ("local", "a&b", False),              # useradd refuses what the original allowed
    ("local", "1234", False),
    ("passwordfile", "x" * 64, True),
    ("passwordfile", "john.someone", True),
    ("passwordfile", "a=b", False),
], ids=lambda v: str(v)[:12])
def test_the_originals_rules_per_method(method, name, ok):
    if ok:
        assert normalize_mailbox(name, method) == name
    else:
        with pytest.raises(Invalid):
            normalize_mailbox(name, method)


def test_addresses_and_methods():
    assert split_address("Alice@Example.com") == ("alice", "example.com")
    with pytest.raises(Invalid, match="name@domain"):
        split_address("alice")
    assert check_auth_method("EPF") == "passwordfile" and check_auth_method("ad") == "directory"
    with pytest.raises(Invalid, match="choose one of"):
        check_auth_method("kerberos")
