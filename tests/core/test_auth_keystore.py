"""The server key: key file permissions, keyring choice, AES-GCM blobs bound to their row."""
from __future__ import annotations

import os
import stat

import keyring
import pytest
from keyring.backends import fail

from core.auth import keystore
from core.auth.keystore import KEY_FILE_NAME, KEYRING_SERVICE, ServerKey, choose_keystore, keyring_entry_name
from core.errors import Invalid, Unavailable


class MemoryKeyring:
    """A secure-looking keyring held in a dict (duck-typed: not registered with keyring's discovery)."""

    priority = 5

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, name: str) -> str | None:
        return self.entries.get((service, name))

    def set_password(self, service: str, name: str, value: str) -> None:
        self.entries[(service, name)] = value

    def delete_password(self, service: str, name: str) -> None:
        self.entries.pop((service, name), None)


class BrokenKeyring(MemoryKeyring):
    """Looks secure, but every call fails (a locked or absent Secret Service)."""

    def get_password(self, service: str, name: str) -> str | None:
        raise RuntimeError("the keyring is locked")

    def set_password(self, service: str, name: str, value: str) -> None:
        raise RuntimeError("the keyring is locked")


class LyingKeyring(MemoryKeyring):
    """Accepts writes and forgets them."""

    def set_password(self, service: str, name: str, value: str) -> None:
        pass


PlaintextKeyring = type("PlaintextKeyring", (MemoryKeyring,), {"__module__": "keyrings.alt.file"})
ZeroPriorityKeyring = type("ZeroPriorityKeyring", (MemoryKeyring,), {"priority": 0})


class FakeChainer(MemoryKeyring):
    def __init__(self, backends: list) -> None:
        super().__init__()
        self.backends = backends


FakeChainer.__module__ = "keyring.backends.chainer"


@pytest.fixture
def use_keyring(monkeypatch):
    """Make ``keyring.get_keyring()`` return the given backend for this test."""

    def install(backend):
        monkeypatch.setattr(keyring, "get_keyring", lambda: backend)
        return backend

    return install


# --- choose_keystore ------------------------------------------------------------------------

def test_choose_keystore_uses_a_working_secure_keyring(use_keyring):
    backend = use_keyring(MemoryKeyring())
    assert choose_keystore() == "keyring"
    assert backend.entries == {}, "the probe entry is removed again"


@pytest.mark.parametrize(
    "backend",
    [
        fail.Keyring(),
        PlaintextKeyring(),
        ZeroPriorityKeyring(),
        BrokenKeyring(),
        LyingKeyring(),
        FakeChainer([]),
        FakeChainer([MemoryKeyring(), PlaintextKeyring()]),
    ],
    ids=["fail-backend", "keyrings.alt-plaintext", "priority-0", "probe-raises", "probe-loses-value",
         "empty-chainer", "chainer-with-plaintext"],
)
def test_choose_keystore_falls_back_to_the_key_file_explicitly(use_keyring, backend):
    use_keyring(backend)
    assert choose_keystore() == "keyfile"


def test_choose_keystore_accepts_a_chainer_of_secure_backends(use_keyring):
    use_keyring(FakeChainer([MemoryKeyring(), MemoryKeyring()]))
    assert choose_keystore() == "keyring"


def test_choose_keystore_survives_get_keyring_raising(monkeypatch):
    def boom():
        raise RuntimeError("no dbus")

    monkeypatch.setattr(keyring, "get_keyring", boom)
    assert choose_keystore() == "keyfile"


# --- the key file ---------------------------------------------------------------------------

def test_key_file_is_created_private_and_reloaded(tmp_path):
    old_umask = os.umask(0)   # even a permissive umask must not widen the key file
    try:
        key = ServerKey.load(tmp_path, "keyfile", create=True)
    finally:
        os.umask(old_umask)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_size == 32
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME], "no temporary file left behind"
    again = ServerKey.load(tmp_path, "keyfile", create=True)
    assert again.decrypt(key.encrypt(b"pencil", b"aad"), b"aad") == b"pencil"
    assert key.store == "keyfile" and key.location == str(path)


def test_key_file_is_created_in_a_missing_data_dir(tmp_path):
    data_dir = tmp_path / "new" / "data"
    ServerKey.load(data_dir, "keyfile", create=True)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert (data_dir / KEY_FILE_NAME).exists()


def test_existing_key_file_is_never_replaced(tmp_path):
    first = ServerKey.load(tmp_path, "keyfile", create=True)
    content = (tmp_path / KEY_FILE_NAME).read_bytes()
    second = ServerKey.load(tmp_path, "keyfile", create=True)
    assert (tmp_path / KEY_FILE_NAME).read_bytes() == content
    assert second.decrypt(first.encrypt(b"x", b"a"), b"a") == b"x"


def test_losing_a_creation_race_uses_the_winners_key(tmp_path):
    winner = ServerKey.load(tmp_path, "keyfile", create=True)
    path = tmp_path / KEY_FILE_NAME
    loser_key = keystore._create_key_file(path)   # the hard link fails: the existing key is read
    assert loser_key == path.read_bytes()
    assert ServerKey(loser_key).decrypt(winner.encrypt(b"x", b"a"), b"a") == b"x"
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_key_file_readable_by_others_is_refused(tmp_path, mode):
    ServerKey.load(tmp_path, "keyfile", create=True)
    path = tmp_path / KEY_FILE_NAME
    path.chmod(mode)
    with pytest.raises(Unavailable) as caught:
        ServerKey.load(tmp_path, "keyfile", create=False)
    assert "chmod 600" in caught.value.message and str(path) in caught.value.message
    assert caught.value.code == "unavailable"


def test_missing_key_file_without_create_is_unavailable(tmp_path):
    with pytest.raises(Unavailable, match="missing"):
        ServerKey.load(tmp_path, "keyfile", create=False)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_damaged_key_file_is_refused(tmp_path):
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(Unavailable, match="damaged"):
        ServerKey.load(tmp_path, "keyfile", create=True)


def test_unknown_store_is_invalid(tmp_path):
    with pytest.raises(Invalid, match="keyring, keyfile"):
        ServerKey.load(tmp_path, "plaintext", create=True)


# --- the keyring ----------------------------------------------------------------------------

def test_keyring_store_creates_and_reloads_the_key(tmp_path, use_keyring):
    backend = use_keyring(MemoryKeyring())
    key = ServerKey.load(tmp_path, "keyring", create=True)
    assert list(backend.entries) == [(KEYRING_SERVICE, keyring_entry_name(tmp_path))]
    assert str(tmp_path.resolve()) in keyring_entry_name(tmp_path)
    again = ServerKey.load(tmp_path, "keyring", create=False)
    assert again.decrypt(key.encrypt(b"s", b"a"), b"a") == b"s"
    assert not (tmp_path / KEY_FILE_NAME).exists(), "no silent key file"


def test_each_data_dir_has_its_own_keyring_entry(tmp_path, use_keyring):
    backend = use_keyring(MemoryKeyring())
    ServerKey.load(tmp_path / "a", "keyring", create=True)
    ServerKey.load(tmp_path / "b", "keyring", create=True)
    assert len(backend.entries) == 2


@pytest.mark.parametrize(
    "backend", [BrokenKeyring(), fail.Keyring(), PlaintextKeyring(), LyingKeyring()],
    ids=["locked", "fail-backend", "plaintext", "loses-value"],
)
def test_keyring_failure_is_unavailable_not_a_fallback(tmp_path, use_keyring, backend):
    use_keyring(backend)
    with pytest.raises(Unavailable, match="keyring"):
        ServerKey.load(tmp_path, "keyring", create=True)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_missing_keyring_entry_without_create_is_unavailable(tmp_path, use_keyring):
    use_keyring(MemoryKeyring())
    with pytest.raises(Unavailable, match="missing"):
        ServerKey.load(tmp_path, "keyring", create=False)


def test_damaged_keyring_entry_is_refused(tmp_path, use_keyring):
    backend = use_keyring(MemoryKeyring())
    backend.set_password(KEYRING_SERVICE, keyring_entry_name(tmp_path), "bm90IGEga2V5")
    with pytest.raises(Unavailable, match="damaged"):
        ServerKey.load(tmp_path, "keyring", create=False)


# --- encryption -----------------------------------------------------------------------------

def test_encrypt_decrypt_round_trip_with_random_nonce():
    key = ServerKey.generate()
    one, two = key.encrypt(b"tanstaaf", b"mailbox:1"), key.encrypt(b"tanstaaf", b"mailbox:1")
    assert one != two, "a fresh nonce each time"
    assert one[0] == 1 and len(one) == 1 + 12 + len(b"tanstaaf") + 16
    assert b"tanstaaf" not in one
    assert key.decrypt(one, b"mailbox:1") == key.decrypt(two, b"mailbox:1") == b"tanstaaf"


def test_aad_mismatch_is_refused():
    key = ServerKey.generate()
    blob = key.encrypt(b"secret", b"mailbox:1")
    with pytest.raises(Unavailable, match="cannot be decrypted"):
        key.decrypt(blob, b"mailbox:2")


def test_other_key_and_tampering_are_refused():
    key = ServerKey.generate()
    blob = key.encrypt(b"secret", b"a")
    with pytest.raises(Unavailable):
        ServerKey.generate().decrypt(blob, b"a")
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(Unavailable):
        key.decrypt(flipped, b"a")
    with pytest.raises(Unavailable, match="unknown format"):
        key.decrypt(b"\x02" + blob[1:], b"a")
    with pytest.raises(Unavailable, match="unknown format"):
        key.decrypt(b"\x01short", b"a")


def test_key_is_never_shown():
    key = ServerKey(b"K" * 32)
    assert "KKKK" not in repr(key)
    with pytest.raises(Invalid):
        ServerKey(b"too short")


def test_backend_checks_are_module_level_for_reuse():
    assert keystore._is_secure_backend(MemoryKeyring())
    assert not keystore._is_secure_backend(fail.Keyring())
