"""The one Sealer of secret settings (core/sealer.py)."""
from __future__ import annotations

import base64

import pytest

from core.auth.keystore import ServerKey
from core.errors import Unavailable
from core.sealer import SEALED_PREFIX, Sealer, is_sealed


def test_round_trip_for_every_secret_setting():
    sealer = Sealer(ServerKey.generate())
    for name in ("ldap_bind_password", "smarthost_password"):
        stored = sealer.seal(name, "pässword 1")
        assert is_sealed(stored) and "pässword" not in stored
        assert sealer.unseal(name, stored) == "pässword 1"
    assert sealer.unseal("smarthost_password", "") == ""


def test_a_sealed_value_opens_only_for_its_setting_and_its_key():
    key = ServerKey.generate()
    stored = Sealer(key).seal("smarthost_password", "secret")
    with pytest.raises(Unavailable):
        Sealer(key).unseal("ldap_bind_password", stored)
    with pytest.raises(Unavailable):
        Sealer(ServerKey.generate()).unseal("smarthost_password", stored)


def test_values_sealed_before_the_sealer_existed_still_open():
    """The two former implementations bound their blobs to these associated data."""
    key = ServerKey.generate()
    old = {"ldap_bind_password": b"pop3-service/setting:ldap_bind_password",
           "smarthost_password": b"smarthost_password"}
    for name, aad in old.items():
        stored = SEALED_PREFIX + base64.b64encode(key.encrypt(b"old secret", aad)).decode("ascii")
        assert Sealer(key).unseal(name, stored) == "old secret"


def test_a_damaged_value_is_a_clear_error():
    with pytest.raises(Unavailable, match="damaged"):
        Sealer(ServerKey.generate()).unseal("smarthost_password", "sealed:!!!")
