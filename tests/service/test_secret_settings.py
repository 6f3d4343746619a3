"""Against a real service: the catalog is every setting the service knows, and every secret
setting shows as (set) through the admin channel and winpop, never its stored text."""
from __future__ import annotations

import sqlalchemy

from core.catalog import SECRET_SETTINGS, SECRET_SHOWN, SETTINGS

SECRET = "Hunter2-secret-7"


def test_the_catalog_is_what_the_running_service_knows(service):
    assert sorted(service.call("settings.get")) == sorted(SETTINGS)
    described = {item["name"]: item for item in service.call("settings.describe")["items"]}
    assert sorted(described) == sorted(SETTINGS)
    assert {name for name, item in described.items() if item["secret"]} == SECRET_SETTINGS


def test_every_secret_setting_shows_set_and_never_its_stored_text(service):
    assert SECRET_SETTINGS   # the loop below must test something
    for name in sorted(SECRET_SETTINGS):
        assert service.call("settings.set", name=name, value=SECRET)["value"] == SECRET_SHOWN
        assert service.call("settings.get", name=name) == {name: SECRET_SHOWN}
        assert service.call("settings.get")[name] == SECRET_SHOWN
        assert service.winpop("get", name, check=True).stdout.strip() == f"{name}: {SECRET_SHOWN}"
    everything = service.winpop("get", check=True).stdout + service.winpop("get", "--json", check=True).stdout
    assert SECRET not in everything and "sealed:" not in everything
    engine = sqlalchemy.create_engine(service.database_url())
    try:
        with engine.connect() as conn:
            stored = dict(conn.execute(sqlalchemy.text("SELECT name, value FROM settings")).all())
    finally:
        engine.dispose()
    for name in SECRET_SETTINGS:
        assert "sealed:" in stored[name] and SECRET not in stored[name]   # sealed in the database
    # Sending back what was shown keeps the secret.
    service.call("settings.set", name="smarthost_password", value=SECRET_SHOWN)
    with engine.connect() as conn:
        again = conn.execute(sqlalchemy.text("SELECT value FROM settings WHERE name='smarthost_password'")).scalar()
    engine.dispose()
    assert again == stored["smarthost_password"]
