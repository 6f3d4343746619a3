"""``python main.py service install`` (and ``--uninstall``): the mail service as a systemd unit.

Install creates an unprivileged ``pop3svc`` user and a ``pop3admin`` group (whose members may use
the admin channel), gives the data directory to that user (0710, group pop3admin), records the
admin group in the settings, writes the unit from ``resources/systemd/pop3-service.service``
(started as root with ``--user pop3svc``: the service binds its ports and starts its privileged
helper for local accounts, then runs as pop3svc), installs the PAM file when there is one, and
enables and starts the unit.

Where systemd is not running (a container, CI) it changes nothing: it says what it would do and
how to run the service in the foreground instead, and exits with status 3. Uninstall stops and
removes the unit and never deletes mail, the data directory or the accounts.
"""
from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.catalog import resolve
from core.db import Database, sqlite_url
from core.errors import Invalid, MailError
from core.paths import default_data_dir
from core.settings import Settings
from service.privileges import RunAs, hand_over

ROOT = Path(__file__).resolve().parent.parent
UNIT_NAME = "pop3-service.service"
UNIT_TEMPLATE = ROOT / "resources" / "systemd" / UNIT_NAME
PAM_SOURCE = ROOT / "resources" / "pam" / "pop3-service"
SERVICE_USER = "pop3svc"
ADMIN_GROUP = "pop3admin"
EXIT_NO_SYSTEMD = 3


@dataclass(frozen=True)
class Step:
    """One thing install does: what a person reads, and how it is done."""

    text: str
    run: Callable[[], None]


@dataclass(frozen=True)
class Target:
    """Where and as whom the service is installed."""

    data_dir: Path
    user: str = SERVICE_USER
    admin_group: str = ADMIN_GROUP
    unit_dir: Path = Path("/etc/systemd/system")
    pam_dir: Path = Path("/etc/pam.d")
    systemctl: tuple[str, ...] = ("systemctl",)
    python: str = sys.executable
    settings: tuple[tuple[str, Any], ...] = ()   # stored before the first start (--setting NAME=VALUE)

    @property
    def unit_path(self) -> Path:
        return self.unit_dir / UNIT_NAME

    @property
    def mailroot(self) -> Path:
        return self.data_dir / "mailroot"


def systemd_running() -> bool:
    """sd_booted(): systemd is PID 1 when /run/systemd/system exists."""
    return Path("/run/systemd/system").is_dir()


def init_name() -> str:
    try:
        return Path("/proc/1/comm").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def render_unit(target: Target, template: Path = UNIT_TEMPLATE) -> str:
    """The unit file text for ``target``."""
    return template.read_text().format(root=ROOT, user=target.user, python=target.python,
                                       data_dir=target.data_dir, mailroot=target.mailroot)


def foreground_command(target: Target) -> str:
    return (f"sudo {shlex.quote(target.python)} {shlex.quote(str(ROOT / 'main.py'))} service "
            f"--data-dir {shlex.quote(str(target.data_dir))} --user {target.user}")


def _run(*cmd: str) -> None:
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"'{' '.join(cmd)}' failed ({done.returncode}): {reason[-1] if reason else 'no output'}")


def _exists(lookup: Callable[[str], object], name: str) -> bool:
    try:
        lookup(name)
        return True
    except KeyError:
        return False


def _unreadable_for_others(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that other users cannot enter (e.g. /root)."""
    for parent in [*reversed(path.parents)]:
        try:
            if not parent.stat().st_mode & 0o001:
                return parent
        except OSError:
            return parent
    return None


def initial_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of ``--setting``, checked as ``winpop set`` would; secrets are refused (a
    secret on a command line shows in the process list, and only the running service seals it)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise Invalid(f"--setting takes NAME=VALUE, not '{text}'.")
    spec = resolve(name)
    if spec.secret:
        raise Invalid(f"The setting '{spec.name}' is a secret: set it with winpop once the service runs.")
    return spec.name, spec.check(value)


def install_steps(target: Target) -> list[Step]:
    def group() -> None:
        if not _exists(grp.getgrnam, target.admin_group):
            _run("groupadd", "--system", target.admin_group)

    def user() -> None:
        if not _exists(pwd.getpwnam, target.user):
            _run("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", str(target.data_dir),
                 "--shell", "/usr/sbin/nologin", "--comment", "POP3 Service", target.user)
        _run("usermod", "--append", "--groups", target.admin_group, target.user)

    def data_dir() -> None:
        who = RunAs.lookup(target.user)
        target.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.mailroot.mkdir(exist_ok=True, mode=0o700)
        hand_over([target.data_dir], who)
        os.chown(target.data_dir, who.uid, grp.getgrnam(target.admin_group).gr_gid)
        os.chmod(target.data_dir, 0o710)     # the admin group reaches admin.sock, reads nothing
        key = target.data_dir / "server.key"
        if key.exists():                      # keystore: the key file must be the service user's, 0600
            os.chown(key, who.uid, who.gid)
            os.chmod(key, 0o600)

    def settings() -> None:
        db = Database(sqlite_url(target.data_dir / "pop3svc.db"))
        try:
            db.upgrade()
            with db.write() as session:
                Settings.put(session, "admin_group", target.admin_group)
                for name, value in target.settings:
                    Settings.put(session, name, value)
        finally:
            db.dispose()
        hand_over([target.data_dir], RunAs.lookup(target.user))

    def pam() -> None:
        target.pam_dir.mkdir(parents=True, exist_ok=True)
        (target.pam_dir / "pop3-service").write_text(PAM_SOURCE.read_text())

    def unit() -> None:
        target.unit_dir.mkdir(parents=True, exist_ok=True)
        target.unit_path.write_text(render_unit(target))
        os.chmod(target.unit_path, 0o644)

    steps = [
        Step(f"create the system group '{target.admin_group}' (its members may administer the service)", group),
        Step(f"create the system user '{target.user}' (no login, no shell) and add it to '{target.admin_group}'",
             user),
        Step(f"give {target.data_dir} to {target.user} (mode 0710, group {target.admin_group}); the key file "
             "stays 0600", data_dir),
        Step(f"record the admin group '{target.admin_group}'"
             + "".join(f", {name} = {value}" for name, value in target.settings) + " in the service's settings",
             settings),
    ]
    if PAM_SOURCE.exists():
        steps.append(Step(f"install the PAM configuration as {target.pam_dir / 'pop3-service'}", pam))
    steps += [
        Step(f"write the unit {target.unit_path} (started as root, the service drops to --user {target.user} "
             "after binding its ports; only its account helper keeps root)",
             unit),
        Step("reload systemd", lambda: _run(*target.systemctl, "daemon-reload")),
        Step(f"enable and start {UNIT_NAME} (it starts at every boot)",
             lambda: _run(*target.systemctl, "enable", "--now", UNIT_NAME)),
    ]
    return steps


def uninstall_steps(target: Target) -> list[Step]:
    def remove_unit() -> None:
        target.unit_path.unlink(missing_ok=True)

    return [
        Step(f"stop and disable {UNIT_NAME}", lambda: _run(*target.systemctl, "disable", "--now", UNIT_NAME)),
        Step(f"remove {target.unit_path}", remove_unit),
        Step("reload systemd", lambda: _run(*target.systemctl, "daemon-reload")),
    ]


def execute(steps: list[Step], out=sys.stdout) -> int:
    """Run the steps in order; stop at the first failure and say which one and why."""
    for number, step in enumerate(steps, 1):
        print(f"[{number}/{len(steps)}] {step.text}", file=out, flush=True)
        try:
            step.run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported the same way
            print(f"python main.py service install: step {number} ({step.text}) failed: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python main.py service install",
                                     description="Install (or --uninstall) the mail service as a systemd unit.")
    parser.add_argument("--uninstall", action="store_true", help="stop and remove the unit (mail and data are kept)")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--user", default=SERVICE_USER, help=f"the unprivileged account (default {SERVICE_USER})")
    parser.add_argument("--admin-group", default=ADMIN_GROUP, help=f"the admin group (default {ADMIN_GROUP})")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done, change nothing")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                        help="store a setting before the first start, e.g. --setting bind_address=192.0.2.7 "
                             "--setting port=110 (the setup wizard passes its address and ports this way, so the "
                             "unit never starts on the defaults first); secrets are set later with winpop")
    args = parser.parse_args(argv)
    try:
        chosen = tuple(initial_setting(text) for text in args.setting)
    except MailError as exc:
        parser.error(exc.message)
    data_dir = (args.data_dir or (Path("/var/lib/pop3-service") if os.geteuid() == 0 else default_data_dir()))
    target = Target(data_dir=data_dir.expanduser().resolve(), user=args.user, admin_group=args.admin_group,
                    settings=chosen)
    steps = uninstall_steps(target) if args.uninstall else install_steps(target)
    verb = "uninstall" if args.uninstall else "install"

    def show_plan() -> None:
        for number, step in enumerate(steps, 1):
            print(f"  {number}. {step.text}")
        if not args.uninstall:
            print(f"\nThe unit it would write:\n\n{render_unit(target)}")

    if args.dry_run:
        print(f"python main.py service {verb} would:")
        show_plan()
        return 0
    if not systemd_running():
        print(f"systemd is not running on this computer (PID 1 is '{init_name()}'), so no system service can be "
              f"{'removed' if args.uninstall else 'installed'}; nothing was changed.\n")
        print(f"On a computer that runs systemd, 'python main.py service {verb}' would:")
        show_plan()
        if not args.uninstall:
            print("Run the service in the foreground instead (it binds the ports as root, then runs as "
                  f"'{target.user}' once that user exists):\n\n    {foreground_command(target)}\n\n"
                  "or, as yourself, with ports above 1024 (the console's 'Start the service' does this in the "
                  "background):\n\n    python3 main.py service\n")
        print(f"python main.py service {verb}: systemd is not running here (see above)", file=sys.stderr)
        return EXIT_NO_SYSTEMD
    if os.geteuid() != 0:
        print(f"python main.py service {verb}: a system service is {verb}ed by root; run: "
              f"sudo {sys.executable} {ROOT / 'main.py'} service {verb}{' --uninstall' if args.uninstall else ''}",
              file=sys.stderr)
        return 2
    blocked = _unreadable_for_others(Path(target.python)) or _unreadable_for_others(ROOT / "main.py")
    if blocked and not args.uninstall:
        print(f"warning: {blocked} is closed to other users; the service runs as '{target.user}' and must read "
              f"{target.python} and {ROOT}. Install the project where every user can read it "
              "(e.g. /opt/pop3-service with a system Python).", file=sys.stderr)
    code = execute(steps)
    if code == 0:
        if args.uninstall:
            print(f"The unit is removed. Mail and settings are kept in {target.data_dir}; the user "
                  f"'{target.user}' and the group '{target.admin_group}' are kept too (userdel, groupdel).")
        else:
            print(f"The POP3 Service runs as '{target.user}' and starts at boot. Add administrators to the "
                  f"'{target.admin_group}' group (usermod -aG {target.admin_group} NAME) and open the console: "
                  "python3 main.py")
    return code
