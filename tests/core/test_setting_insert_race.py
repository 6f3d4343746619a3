"""Two administrators storing a setting that was never stored: there is no row to lock, both
insert, and on PostgreSQL the second insert fails at commit (an IntegrityError: one CI run of
tests/service/test_setting_versions.py answered 'internal' to one of six administrators). The
second writer is retried once: a property sheet's expected version 0 is then refused as a
conflict that names the change, and winpop (no version) writes over it, the last writer winning.

The race is made to happen here on any database: the other administrator's row is committed just
before ours, and our insert of the same setting fails exactly as the second insert does."""
from __future__ import annotations

import pytest

from core.admin import Admin
from core.auth.keystore import ServerKey
from core.auth.provider import PasswordFileProvider
from core.errors import Conflict
from core.settings import Settings
from core.tables import Setting


@pytest.fixture
def admin(db, store, tmp_path):
    provider = PasswordFileProvider(db, ServerKey.generate(), mailroot=tmp_path / "mailroot", scram_iterations=32)
    return Admin(db, store, auth=provider)


@pytest.fixture
def raced(admin, monkeypatch):
    """The first write of a setting loses the insert race to another administrator (idle_timeout 900)."""
    real = Admin._write_setting
    lost: list[str] = []

    def racing(self, spec, checked, expected_version):
        if not lost:
            lost.append(spec.name)
            with self.db.write() as session:          # the other administrator, first
                Settings.put(session, spec.name, 900)
            with self.db.write() as session:          # ours: the same insert, now a duplicate
                session.add(Setting(name=spec.name, value=str(checked), version=1))
        return real(self, spec, checked, expected_version)

    monkeypatch.setattr(Admin, "_write_setting", racing)
    return lost


def test_a_sheet_that_loses_the_insert_race_is_told_what_changed(admin, raced, db):
    assert admin.settings_snapshot().versions["idle_timeout"] == 0
    with pytest.raises(Conflict, match="changed by another administrator .* it is now 900"):
        admin.settings_set("idle_timeout", 700, expected_version=0)
    assert raced == ["idle_timeout"]
    with db.read() as session:
        assert Settings.get(session, "idle_timeout") == 900 and Settings.version(session, "idle_timeout") == 1


def test_winpop_that_loses_the_insert_race_writes_over_it(admin, raced, db):
    change = admin.settings_set("idle_timeout", 700)
    assert raced == ["idle_timeout"] and change.version == 2
    with db.read() as session:
        assert Settings.get(session, "idle_timeout") == 700
