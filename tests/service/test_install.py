"""``python main.py service install`` / ``--uninstall``: the plan where systemd is absent (this CI),
and the real steps (accounts, ownership, modes, settings, unit) against a stand-in systemctl."""
from __future__ import annotations

import grp
import json
import os
import pwd
import secrets
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from service import install
from tests.support import ROOT

needs_no_systemd = pytest.mark.skipif(install.systemd_running(), reason="systemd runs here")


def run_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "service", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@needs_no_systemd
def test_install_without_systemd_explains_and_changes_nothing(tmp_path):
    data = tmp_path / "data"
    unit = Path("/etc/systemd/system") / install.UNIT_NAME
    unit_before = unit.exists()
    done = run_main("install", "--data-dir", str(data))
    assert done.returncode == install.EXIT_NO_SYSTEMD
    assert "systemd is not running on this computer" in done.stdout
    assert "nothing was changed" in done.stdout
    assert "create the system user 'pop3svc'" in done.stdout
    assert "enable and start pop3-service.service" in done.stdout
    assert f"main.py service --data-dir {data} --user pop3svc" in done.stdout    # the foreground command
    assert "--user pop3svc" in done.stdout and "NoNewPrivileges=true" in done.stdout
    assert "systemd is not running here" in done.stderr
    assert not data.exists()
    assert unit.exists() == unit_before


@needs_no_systemd
def test_uninstall_without_systemd_says_so(tmp_path):
    for args in (("install", "--uninstall"), ("uninstall",)):
        done = run_main(*args, "--data-dir", str(tmp_path / "data"))
        assert done.returncode == install.EXIT_NO_SYSTEMD
        assert "no system service can be removed" in done.stdout
        assert "stop and disable pop3-service.service" in done.stdout


def test_dry_run_prints_the_plan_and_the_unit(tmp_path):
    done = run_main("install", "--dry-run", "--data-dir", str(tmp_path / "d"), "--user", "mailsvc")
    assert done.returncode == 0
    assert "would:" in done.stdout and "--user mailsvc" in done.stdout
    command = f"{sys.executable} {ROOT}/main.py service --data-dir {tmp_path / 'd'} --user mailsvc"
    assert f"ExecStart={command}" in done.stdout
    assert not (tmp_path / "d").exists()


def test_unit_template_renders_every_placeholder(tmp_path):
    text = install.render_unit(install.Target(data_dir=tmp_path / "d", user="svc"))
    assert "{" not in text and "}" not in text
    assert "--user svc" in text and "\nUser=" not in text    # root starts it; the service drops to svc
    assert "RestartForceExitStatus=75" in text
    assert f"ReadWritePaths={tmp_path / 'd'} {tmp_path / 'd' / 'mailroot'}" in text


@pytest.mark.skipif(os.geteuid() != 0, reason="creates accounts: needs root (CI runs as root)")
def test_install_steps_create_accounts_ownership_settings_and_unit(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="pop3-install-"))
    suffix = secrets.token_hex(3)
    calls = tmp_path / "systemctl.calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    target = install.Target(data_dir=base / "data", user=f"p3i{suffix}", admin_group=f"p3a{suffix}",
                            unit_dir=tmp_path / "units", pam_dir=tmp_path / "pam.d", systemctl=(str(fake),),
                            settings=(install.initial_setting("port=1110"),
                                      install.initial_setting("bind_address=127.0.0.1")))
    try:
        assert install.execute(install.install_steps(target)) == 0
        user = pwd.getpwnam(target.user)
        group = grp.getgrnam(target.admin_group)
        assert user.pw_shell == "/usr/sbin/nologin" and user.pw_uid != 0
        assert target.user in group.gr_mem
        info = target.data_dir.stat()
        assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (user.pw_uid, group.gr_gid, 0o710)
        assert (target.data_dir / "pop3svc.db").stat().st_uid == user.pw_uid
        assert target.mailroot.stat().st_uid == user.pw_uid
        with sqlite3.connect(target.data_dir / "pop3svc.db") as db:
            value = db.execute("select value from settings where name='admin_group'").fetchone()[0]
        assert json.loads(value) == target.admin_group
        with sqlite3.connect(target.data_dir / "pop3svc.db") as db:   # stored before the unit's first start
            stored = dict(db.execute("select name, value from settings where name in ('port', 'bind_address')"))
        assert {k: json.loads(v) for k, v in stored.items()} == {"port": 1110, "bind_address": "127.0.0.1"}
        unit = target.unit_path.read_text()
        assert f"--data-dir {target.data_dir} --user {target.user}" in unit
        assert calls.read_text().splitlines() == ["daemon-reload", f"enable --now {install.UNIT_NAME}"]
        if install.PAM_SOURCE.exists():
            assert (target.pam_dir / "pop3-service").read_text() == install.PAM_SOURCE.read_text()

        assert install.execute(install.install_steps(target)) == 0     # again: nothing breaks
        assert install.execute(install.uninstall_steps(target)) == 0
        assert not target.unit_path.exists()
        assert (target.data_dir / "pop3svc.db").exists()               # mail and settings are kept
        assert calls.read_text().splitlines()[-2:] == [f"disable --now {install.UNIT_NAME}", "daemon-reload"]
    finally:
        subprocess.run(["userdel", target.user], check=False, capture_output=True)
        subprocess.run(["groupdel", target.admin_group], check=False, capture_output=True)
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_failing_step_is_named(capsys):
    def boom() -> None:
        raise RuntimeError("no space left")
    steps = [install.Step("first", lambda: None), install.Step("write the unit", boom)]
    assert install.execute(steps) == 1
    assert "step 2 (write the unit) failed: no space left" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    ("port", "NAME=VALUE"),
    ("port=abc", "whole number"),
    ("ldap_bind_password=hunter2", "is a secret"),
    ("nosuch=1", "There is no setting"),
], ids=["no-equals", "bad-value", "secret", "unknown"])
def test_install_refuses_a_bad_setting_and_changes_nothing(tmp_path, capsys, text, message):
    with pytest.raises(SystemExit) as exit_:
        install.main(["--dry-run", "--data-dir", str(tmp_path / "d"), "--setting", text])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
