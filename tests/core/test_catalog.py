"""The catalog (core/catalog.py): complete when imported, the only place settings are declared,
one secret flag that every display follows, one listener table the port settings come from."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core import catalog
from core.catalog import LISTENERS, MAIL_LISTENERS, SECRET_SHOWN, SETTINGS, Kind, TlsMode
from core.errors import Invalid, NotFound
from core.ipc.ops import redact

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_importing_the_catalog_alone_gives_every_setting_and_no_database_layer():
    found = _run("import json, sys\n"
                 "from core.catalog import SETTINGS\n"
                 "print(json.dumps({'names': sorted(SETTINGS), 'modules': sorted(sys.modules)}))")
    assert found["names"] == sorted(SETTINGS)
    heavy = [m for m in found["modules"] if m.split(".")[0] in ("sqlalchemy", "PySide6", "service", "gui")
             or m in ("core.db", "core.tables", "core.store", "core.admin")]
    assert heavy == []


def test_importing_every_module_registers_nothing():
    """Import every module of core and service: the catalog is the same before and after."""
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                     for top in ("core", "service") for p in (ROOT / top).rglob("*.py")
                     if "migrations" not in p.parts)
    found = _run("import importlib, json\n"
                 "from core.catalog import SETTINGS, LISTENERS\n"
                 "before = (list(SETTINGS), list(LISTENERS))\n"
                 f"for name in {modules!r}:\n"
                 "    importlib.import_module(name)\n"
                 "print(json.dumps({'same': before == (list(SETTINGS), list(LISTENERS))}))")
    assert found["same"]


def test_settings_are_declared_only_in_the_catalog():
    """No module but the catalog makes a SettingSpec (the console's description of a setting an
    unknown newer service has is the one exception), and nothing calls a register()."""
    makers = []
    for top in ("core", "service", "gui"):
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                        == "SettingSpec":
                    makers.append(str(path.relative_to(ROOT)))
    assert sorted(set(makers)) == ["core/catalog.py", "gui/dialogs/server_properties.py"]
    assert not hasattr(catalog, "register")


@pytest.mark.parametrize("spec", list(SETTINGS.values()), ids=list(SETTINGS))
def test_every_setting_is_described_and_its_default_is_what_its_check_gives(spec):
    assert spec.label and spec.name == spec.name.lower()
    if spec.kind == Kind.YES_NO:
        assert isinstance(spec.default, bool)
    if spec.default is not None and not spec.secret and spec.name not in ("bind_address", "admin_tcp_bind"):
        assert spec.check(spec.default) == spec.default
    assert set(spec.describe()) >= {"name", "label", "default", "help", "restart", "writable", "type", "secret"}


def test_the_secret_settings_are_exactly_the_flagged_passwords():
    assert catalog.SECRET_SETTINGS == {"ldap_bind_password", "smarthost_password"}
    assert all(SETTINGS[name].kind == Kind.SECRET for name in catalog.SECRET_SETTINGS)
    for name in catalog.SECRET_SETTINGS:
        assert catalog.shown(name, "sealed:AAAA") == SECRET_SHOWN
        assert catalog.shown(name, "") == ""
        assert redact("settings.set", {"name": name.upper(), "value": "hunter2"})["value"] == "***"
    assert catalog.shown("smarthost_user", "relay@example.org") == "relay@example.org"
    assert redact("settings.set", {"name": "smarthost_user", "value": "x"})["value"] == "x"


def test_a_secret_is_checked_but_never_sealed_by_the_catalog():
    check = SETTINGS["smarthost_password"].check
    assert check("hunter2") == "hunter2"      # the service's Sealer seals it (Admin.settings_set)
    with pytest.raises(Invalid, match="line breaks"):
        check("a\nb")


def test_resolve_by_name_or_alias():
    assert catalog.resolve("POP3PORT").name == "port"
    assert catalog.resolve(" LogLevel ").name == "logging"
    with pytest.raises(NotFound, match="Known settings"):
        catalog.resolve("nosuch")
    assert not catalog.is_secret("nosuch")


def test_every_mail_listener_has_its_port_setting_flag_and_unprivileged_port():
    assert [s.name for s in MAIL_LISTENERS] == ["pop3", "pop3s", "smtp", "submission", "smtps"]
    assert {s.name: s.default_port for s in MAIL_LISTENERS} == {"pop3": 110, "pop3s": 995, "smtp": 25,
                                                                "submission": 587, "smtps": 465}
    assert [s.flag for s in MAIL_LISTENERS] == ["--pop3-port", "--pop3s-port", "--smtp-port", "--submission-port",
                                                "--smtps-port"]   # DESIGN §2
    for spec in LISTENERS.values():
        setting = SETTINGS[spec.port_setting]
        assert setting.kind == Kind.PORT and setting.restart == spec.name and setting.default == spec.default_port
    assert {s.name for s in MAIL_LISTENERS if s.tls == TlsMode.IMPLICIT} == {"pop3s", "smtps"}
    assert len({s.unprivileged_port for s in MAIL_LISTENERS}) == len(MAIL_LISTENERS)


def test_the_port_note_names_a_command_line_override():
    listeners = [{"name": "pop3", "port": 1110}, {"name": "smtp", "port": 25}]
    assert "uses port 1110" in catalog.port_in_use_note("port", 110, listeners)
    assert catalog.port_in_use_note("smtp_port", 25, listeners) == ""
    assert "no such listener" in catalog.port_in_use_note("smtps_port", 465, listeners)
    assert catalog.port_in_use_note("admin_tcp_port", 9110, listeners) == ""   # no command-line override
    assert catalog.port_in_use_note("logging", 2, listeners) == ""
