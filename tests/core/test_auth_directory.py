"""The ``directory`` method against a real slapd (StartTLS, its own CA) started for these tests."""
from __future__ import annotations

import secrets
import time

import pytest

from core.admin import Admin
from core.auth.directory import DirectoryConfig, DirectoryProvider
from core.auth.keystore import ServerKey
from core.auth.migration import migrate_to_directory
from core.auth.provider import LOGIN, PLAIN, AuthProvider, PasswordFileProvider
from core.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from core.sealer import Sealer
from core.settings import Settings
from core.tables import Credential, Setting
from tests.slapd import PEOPLE, READER_DN, READER_PW, Slapd, make_certificates, missing_reason
from tests.support import free_port

PASSWORD = "Dir-pw-4471"

pytestmark = pytest.mark.skipif(missing_reason() is not None, reason=f"no OpenLDAP server: {missing_reason()}")


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    yield server
    server.stop()


def domain() -> str:
    """A domain of its own for each test: entries live as long as the slapd."""
    return f"d{secrets.token_hex(4)}.example"


def make_provider(db, slapd, **overrides) -> DirectoryProvider:
    with db.write() as session:
        Settings.put(session, "auth", "directory")
    return DirectoryProvider(db, DirectoryConfig.from_settings(slapd.settings(**overrides), None))


@pytest.fixture
def provider(db, slapd):
    p = make_provider(db, slapd)
    yield p
    p.close()


@pytest.fixture
def admin(db, store, provider):
    return Admin(db, store, auth=provider, available_methods=("passwordfile", "local", "directory"))


def test_the_provider_has_the_shared_interface(provider):
    assert isinstance(provider, AuthProvider)
    assert provider.method == "directory" and provider.supports_challenge_response is False
    assert provider.mechanisms(tls=False, spa_required=True) == []
    assert provider.mechanisms(tls=True, spa_required=True) == [PLAIN, LOGIN]
    assert provider.mechanisms(tls=False, spa_required=False) == [PLAIN, LOGIN]
    assert "service-bind" not in repr(provider.config)


def test_create_associated_user_adds_an_entry_and_logons_bind_as_it(admin, provider, slapd):
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"alice@{d}", password=PASSWORD, create_user=True)
    dn = f"uid=alice@{d},{PEOPLE}"
    assert slapd.exists(dn)
    assert "inetOrgPerson" in slapd.attribute(dn, "objectClass")
    stored = slapd.attribute(dn, "userPassword")
    assert stored and PASSWORD not in stored[0]          # hashed by slapd ({SSHA}), base64 in LDIF
    assert provider.verify_password(f"alice@{d}", PASSWORD).address == f"alice@{d}"
    assert provider.verify_password(f"alice@{d}", "wrong") is None
    assert provider.verify_password(f"alice@{d}", "") is None      # never an unauthenticated bind
    assert provider.verify_password(f"nobody@{d}", PASSWORD) is None

    admin.mailbox_set_password(f"alice@{d}", "Changed-9")
    assert provider.verify_password(f"alice@{d}", "Changed-9") is not None
    assert provider.verify_password(f"alice@{d}", PASSWORD) is None

    admin.mailbox_delete(f"alice@{d}", delete_user=True)
    assert not slapd.exists(dn)


def test_the_same_mailbox_name_may_exist_in_different_domains(admin, provider):
    d1, d2 = domain(), domain()
    for d, pw in ((d1, "first-pw-1"), (d2, "second-pw-2")):
        admin.domain_add(d)
        admin.mailbox_add(f"bob@{d}", password=pw, create_user=True)
    assert provider.verify_password(f"bob@{d1}", "first-pw-1").domain == d1
    assert provider.verify_password(f"bob@{d2}", "second-pw-2").domain == d2
    assert provider.verify_password(f"bob@{d1}", "second-pw-2") is None


def test_without_create_user_the_mailbox_maps_to_an_existing_entry(admin, provider, slapd):
    d = domain()
    admin.domain_add(d)
    slapd.add_person(f"carol@{d}", "carol-own-pw")
    admin.mailbox_add(f"carol@{d}", create_user=False)
    assert provider.verify_password(f"carol@{d}", "carol-own-pw") is not None
    with pytest.raises(NotFound, match="No directory entry matches dave@"):
        admin.mailbox_add(f"dave@{d}", create_user=False)
    with pytest.raises(Invalid, match="give no password here"):
        admin.mailbox_add(f"carol2@{d}", password="x-pw", create_user=False)


def test_a_bind_account_without_rights_maps_but_cannot_create(db, store, slapd):
    reader = make_provider(db, slapd, ldap_bind_dn=READER_DN, ldap_bind_password=READER_PW)
    admin = Admin(db, store, auth=reader, available_methods=("directory",))
    d = domain()
    admin.domain_add(d)
    with pytest.raises(Forbidden, match="may not create entries"):
        admin.mailbox_add(f"erin@{d}", password=PASSWORD, create_user=True)
    assert admin.mailbox_list(d).total == 0
    slapd.add_person(f"erin@{d}", "erin-own-pw")
    admin.mailbox_add(f"erin@{d}", create_user=True)      # an entry exists: mapped, not created
    assert reader.verify_password(f"erin@{d}", "erin-own-pw") is not None
    reader.close()


def test_an_unreachable_directory_is_unavailable_never_a_wrong_password(db, admin, slapd):
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"frank@{d}", password=PASSWORD, create_user=True)
    down = make_provider(db, slapd, ldap_urls=f"ldap://127.0.0.1:{free_port()}", ldap_timeout=2)
    started = time.monotonic()
    for password in (PASSWORD, "wrong"):
        with pytest.raises(Unavailable, match="unreachable"):
            down.verify_password(f"frank@{d}", password)
    assert time.monotonic() - started < 10


def test_servers_are_tried_in_order_failover(db, admin, slapd):
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"gina@{d}", password=PASSWORD, create_user=True)
    both = make_provider(db, slapd, ldap_urls=f"ldap://127.0.0.1:{free_port()} {slapd.url}")
    assert both.verify_password(f"gina@{d}", PASSWORD) is not None
    assert both.verify_password(f"gina@{d}", PASSWORD + "x") is None
    both.close()


def test_a_refused_bind_account_or_untrusted_certificate_is_unavailable(db, admin, slapd, tmp_path):
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"hal@{d}", password=PASSWORD, create_user=True)
    bad_bind = make_provider(db, slapd, ldap_bind_password="not-the-bind-password")
    with pytest.raises(Unavailable, match="refused the service's bind account"):
        bad_bind.verify_password(f"hal@{d}", PASSWORD)
    other_ca, _cert, _key = make_certificates(tmp_path)
    untrusted = make_provider(db, slapd, ldap_ca_file=str(other_ca))
    with pytest.raises(Unavailable):
        untrusted.verify_password(f"hal@{d}", PASSWORD)


def test_the_bind_cache_is_off_by_default_and_remembers_only_successes(db, admin, slapd):
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"ivy@{d}", password=PASSWORD, create_user=True)
    binds: list[str] = []

    def counting(p: DirectoryProvider) -> DirectoryProvider:
        real = p._user_bind
        p._user_bind = lambda dn, pw: binds.append(dn) or real(dn, pw)   # type: ignore[method-assign]
        return p

    plain = counting(make_provider(db, slapd))
    for _ in range(2):
        assert plain.verify_password(f"ivy@{d}", PASSWORD) is not None
    assert len(binds) == 2
    binds.clear()
    cached = counting(make_provider(db, slapd, ldap_bind_cache_seconds=60))
    for _ in range(3):
        assert cached.verify_password(f"ivy@{d}", PASSWORD) is not None
    assert len(binds) == 1
    assert cached.verify_password(f"ivy@{d}", "wrong") is None       # a wrong password still asks
    assert len(binds) == 2


def test_the_bind_password_is_sealed_in_the_database_and_shown_as_set(db, store, slapd):
    key = ServerKey.generate()
    admin = Admin(db, store, auth=None, available_methods=("passwordfile", "directory"))
    with pytest.raises(Unavailable, match="stored encrypted"):
        admin.settings_set("ldap_bind_password", "clear-secret-99")   # no service key: refused
    admin = Admin(db, store, auth=None, available_methods=("passwordfile", "directory"), sealer=Sealer(key))
    result = admin.settings_set("ldap_bind_password", "clear-secret-99")
    assert result.value == "(set)"
    assert admin.settings_get("ldap_bind_password") == {"ldap_bind_password": "(set)"}
    assert admin.settings_get()["ldap_bind_password"] == "(set)"
    with db.read() as session:
        raw = session.get(Setting, "ldap_bind_password").value
        values = Settings.get_all(session)
    assert "clear-secret-99" not in raw and "sealed:" in raw
    assert DirectoryConfig.from_settings(values, Sealer(key)).bind_password == "clear-secret-99"
    assert admin.settings_set("ldap_bind_password", "(set)").value == "(set)"     # unchanged
    with db.read() as session:
        assert session.get(Setting, "ldap_bind_password").value == raw


def test_migrate_moves_a_password_file_mailbox_keeping_its_password(db, store, slapd):
    key = ServerKey.generate()
    pwfile = PasswordFileProvider(db, key, scram_iterations=32)
    admin = Admin(db, store, auth=pwfile, available_methods=("passwordfile", "directory"))
    d = domain()
    admin.domain_add(d)
    admin.mailbox_add(f"kim@{d}", password="kims-old-pw")
    admin.mailbox_add(f"lee@{d}", password="lees-old-pw")
    directory = DirectoryProvider(db, DirectoryConfig.from_settings(slapd.settings(), None))
    first = migrate_to_directory(db, key, directory, f"kim@{d}")
    assert first.created and first.password_carried and first.remaining == 1 and not first.switched
    assert directory.verify_password(f"kim@{d}", "kims-old-pw") is not None
    last = migrate_to_directory(db, key, directory, f"lee@{d}")
    assert last.switched and last.remaining == 0
    with db.read() as session:
        assert Settings.get(session, "auth") == "directory"
        assert session.query(Credential).count() == 0
    with pytest.raises(Conflict, match="uses the 'directory' method"):
        migrate_to_directory(db, key, directory, f"lee@{d}")
    directory.close()
