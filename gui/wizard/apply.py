"""Applying the setup wizard's plan through the admin channel, one named step after another.

Nothing blocks: each step sends a request (or starts a process) and goes on from its callback;
waiting for the service is the ``IpcClient``'s own connect loop, nudged by a timer. A failure
names its step and the reason, then undoes what this run made (the domain it created, the
service process it started, the data directory it created), so Finish can simply be pressed
again.
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from core.catalog import MAIL_LISTENERS
from core.parsing import EVERY_ADDRESS
from gui import service_process
from gui.ipc_client import IpcClient

CONNECT_TIMEOUT_MS = 45_000
POLL_MS = 100
PORT_SETTINGS = tuple(spec.port_setting for spec in MAIL_LISTENERS)
LISTENER_OF = {spec.port_setting: spec.name for spec in MAIL_LISTENERS}
FLAG_OF = {spec.port_setting: spec.flag for spec in MAIL_LISTENERS}   # the service's --pop3-port ...


@dataclass(frozen=True)
class SetupPlan:
    """Everything the wizard decided, ready to apply."""

    data_dir: Path
    mode: str = "background"                 # or "system"
    auth: str = "passwordfile"
    ldap: dict[str, str] = field(default_factory=dict)
    mailroot: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    tls: tuple[str, ...] = ("generate", "localhost")   # ("generate", host) or ("import", cert_pem, key_pem)
    hostname: str = "localhost"              # the public mail host name: the `hostname` setting
    bind_address: str = ""                   # the `bind_address` setting: '' = every address
    spa: bool = True
    domain: str = ""
    mailbox: str = ""
    password: str = ""
    rerun: bool = False

    @property
    def address(self) -> str:
        return f"{self.mailbox}@{self.domain}"

    @property
    def host(self) -> str:
        """The address the listeners bind."""
        return self.bind_address or EVERY_ADDRESS

    def first_start_args(self) -> tuple[str, ...]:
        """Command-line overrides for the first start: the chosen address and ports from the outset
        (the same values are stored as settings, so later starts without flags use them too)."""
        args = ["--bind", self.host]
        for key in PORT_SETTINGS:
            if key in self.ports:
                args += [str(FLAG_OF[key]), str(int(self.ports[key]))]
        return tuple(args)

    def install_args(self) -> tuple[str, ...]:
        """For a system service: the same address, ports and host name stored by ``service install``
        before the unit's first start (a unit has no one-run overrides)."""
        args = ["--setting", f"bind_address={self.bind_address}", "--setting", f"hostname={self.hostname}"]
        for key in PORT_SETTINGS:
            if key in self.ports:
                args += ["--setting", f"{key}={int(self.ports[key])}"]
        return tuple(args)

    def summary_rows(self) -> list[tuple[str, str]]:
        rows = []
        if not self.rerun:
            rows.append(("Service", "a system service (pop3svc, starts at boot)" if self.mode == "system"
                         else "in the background, as you"))
            rows.append(("Data directory", str(self.data_dir)))
            rows.append(("Authentication", {"passwordfile": "encrypted password file", "local": "local accounts (PAM)",
                                            "directory": "directory (LDAP / Active Directory)"}[self.auth]))
            if self.auth == "directory":
                rows.append(("Directory", f"{self.ldap.get('ldap_urls')}, base {self.ldap.get('ldap_base_dn')}, "
                                          f"as {self.ldap.get('ldap_bind_dn')}"))
        rows.append(("Host name", self.hostname))
        rows.append(("Root mail directory", self.mailroot))
        rows.append(("Listens on", self.bind_address or "every address of this computer"))
        names = tuple((spec.short, spec.port_setting) for spec in MAIL_LISTENERS)
        rows.append(("Ports", ", ".join(f"{label} {self.ports[key]}" for label, key in names if key in self.ports)))
        rows.append(("TLS certificate", f"self-signed for {self.tls[1]}" if self.tls[0] == "generate"
                     else "from the chosen PEM files"))
        rows.append(("Secure password authentication", "required" if self.spa else "not required"))
        if not self.rerun:
            rows.append(("First mailbox", self.address))
        return rows


class SetupRunner(QObject):
    """Applies a ``SetupPlan``; ``finished(mailbox info)`` or ``failed(step, reason)``."""

    progress = Signal(str)          # the step now being done
    step_done = Signal(str)
    finished = Signal(object)
    failed = Signal(str, str)

    def __init__(self, plan: SetupPlan, *, client: IpcClient | None = None, service_args: tuple[str, ...] = (),
                 install_command: list[str] | None = None, current: dict[str, Any] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.plan = plan
        self.client = client
        self.service_args = tuple(service_args)
        self.install_command = install_command
        self.current = dict(current or {})     # settings as they are (re-run): only changes are sent
        self.running = False
        self.done: list[str] = []
        self.step = ""
        self.started_pid: int | None = None
        self.log_path: Path | None = None
        self.created_data_dir = False
        self.created_domain = ""
        self.mailbox_info: dict[str, Any] | None = None
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._wait: QTimer | None = None
        self._process: QProcess | None = None

    # -- the plan as steps -------------------------------------------------------------------------
    def start(self) -> None:
        plan = self.plan
        self.running, self.done = True, []
        self.started_pid, self.created_domain, self.created_data_dir = None, "", False
        steps: list[tuple[str, Callable[[], None]]] = []
        if not plan.rerun:
            steps.append(("start the service", self._start_service))
            steps.append(("connect to the service", self._connect))
        steps.append(("store the settings", self._store_settings))
        steps.append(("install the TLS certificate", self._install_certificate))
        steps.append(("put the settings into effect", self._take_effect))
        steps.append(("check the listeners", self._check_listeners))
        if not plan.rerun:
            steps.append(("create the domain", self._add_domain))
            steps.append(("create the mailbox", self._add_mailbox))
        self._steps = steps
        self._next()

    def _next(self) -> None:
        if self.step:
            self.done.append(self.step)
            self.step_done.emit(self.step)
        if not self._steps:
            self.step = ""
            self.running = False
            self.finished.emit(self.mailbox_info or {})
            return
        self.step, action = self._steps.pop(0)
        self.progress.emit(self.step)
        action()

    def _fail(self, reason: str) -> None:
        step, self.step = self.step, ""
        self._stop_waiting()
        self._undo(lambda: self._report(step, reason))

    def _report(self, step: str, reason: str) -> None:
        self.running = False
        self.failed.emit(step, reason)

    def _send(self, op: str, params: dict[str, Any], then: Callable[[Any], None]) -> None:
        assert self.client is not None
        self.client.request(op, params, then, lambda err: self._fail(getattr(err, "message", str(err))))

    # -- steps -------------------------------------------------------------------------------------
    def _start_service(self) -> None:
        data_dir = self.plan.data_dir
        if (data_dir / "admin.sock").exists() and service_process.read_pid(data_dir):
            self._next()   # already running (a second attempt): use it
            return
        self.created_data_dir = not data_dir.exists()
        if self.plan.mode == "system":
            cmd = [*(self.install_command or [sys.executable, str(service_process.MAIN_PY), "service", "install",
                                              "--data-dir", str(data_dir)]), *self.plan.install_args()]
            self._process = QProcess(self)
            self._process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
            self._process.finished.connect(self._installed)
            self._process.errorOccurred.connect(
                lambda _e: self._fail(f"could not run {cmd[0]}: {self._process.errorString()}")
                if self._process is not None and self._process.state() == QProcess.ProcessState.NotRunning
                and self.step == "start the service" else None)
            self._process.start(cmd[0], cmd[1:])
            return
        # The chosen address and ports from the first moment: never the defaults on every address.
        started = service_process.start_background(data_dir, self.service_args + self.plan.first_start_args())
        self.log_path = started.log_path
        if not started.ok:
            self._fail(started.error)
            return
        self.started_pid = started.pid
        self._next()

    def _installed(self, code: int, _status: Any) -> None:
        output = bytes(self._process.readAll().data()).decode("utf-8", "replace").strip() if self._process else ""
        if code != 0:
            last = "\n".join(output.splitlines()[-4:])
            self._fail(f"'python main.py service install' ended with status {code}: {last}")
            return
        self._next()

    def _connect(self) -> None:
        client = self.client
        if client is None:
            client = self.client = IpcClient(self.plan.data_dir, self)
        self._wait_for(lambda: client.is_connected, "the service did not open its admin channel",
                       kick=client.retry_now)
        client.start()

    def _wait_for(self, condition: Callable[[], bool], timeout_text: str, *, kick: Callable[[], None]) -> None:
        """Poll ``condition`` on a timer (never a sleep); fail if the service process died meanwhile."""
        self._stop_waiting()
        timer = QTimer(self)
        timer.setInterval(POLL_MS)
        waited = [0]

        def tick() -> None:
            if condition():
                self._stop_waiting()
                self._next()
                return
            waited[0] += POLL_MS
            if self.started_pid is not None and not service_process.is_alive(self.started_pid):
                self._fail("the service stopped during start-up:\n" + service_process.failure_reason(self.log_path))
            elif waited[0] >= CONNECT_TIMEOUT_MS:
                self._fail(f"{timeout_text} within {CONNECT_TIMEOUT_MS // 1000} s:\n"
                           + service_process.failure_reason(self.plan.data_dir / "logs" / "service.log"))
            else:
                kick()

        timer.timeout.connect(tick)
        self._wait = timer
        timer.start()

    def _stop_waiting(self) -> None:
        if self._wait is not None:
            self._wait.stop()
            self._wait.deleteLater()
            self._wait = None

    def _settings_to_send(self) -> list[tuple[str, Any]]:
        plan = self.plan
        values: list[tuple[str, Any]] = []
        if not plan.rerun:
            values.append(("auth", plan.auth))
            for key in ("ldap_urls", "ldap_base_dn", "ldap_bind_dn", "ldap_bind_password"):
                if plan.auth == "directory":
                    values.append((key, plan.ldap.get(key, "")))
        values.append(("mailroot", plan.mailroot))
        values += [(key, int(plan.ports[key])) for key in PORT_SETTINGS if key in plan.ports]
        values.append(("sparequired", bool(plan.spa)))
        values.append(("hostname", plan.hostname))
        values.append(("bind_address", plan.bind_address))
        if plan.rerun:   # only what changes: a re-run never rewrites what it was not asked to
            values = [(k, v) for k, v in values if self.current.get(k) != v]
        return values

    def _listeners_to_restart(self, running: list[dict[str, Any]]) -> list[str]:
        """The listeners whose address or port this run changed and that are not on it yet (a
        service started with --bind or a port flag keeps those for its run: no pointless restart)."""
        now = {str(item.get("name")): item for item in running}
        address_changed = self.current.get("bind_address") != self.plan.bind_address
        names = []
        for key in PORT_SETTINGS:
            name = LISTENER_OF[key]
            if key not in self.plan.ports or name not in now:
                continue
            if not address_changed and self.current.get(key) == self.plan.ports[key]:
                continue
            item = now[name]
            if int(item.get("port") or 0) != int(self.plan.ports[key]) or item.get("address") != self.plan.host:
                names.append(name)
        return names

    def _take_effect(self) -> None:
        """Restart only what the running service did not take at once: the listeners whose
        address or port changed; the whole process only if it kept its old mail root or host name
        (a service whose store cannot switch its root while running)."""
        def look(info: dict[str, Any]) -> None:
            root = Path(str(info.get("mailroot") or "")).expanduser()
            kept = [what for what, same in (
                ("mail root", root.resolve() == Path(self.plan.mailroot).expanduser().resolve()),
                ("host name", str(info.get("hostname") or "") == self.plan.hostname)) if not same]
            if kept:
                self._restarting(f"restart the service for the new {' and '.join(kept)}", self._restart_process)
                return
            names = self._listeners_to_restart(list(info.get("listeners") or []))
            if names:
                self._restarting("restart the listeners on the new address and ports",
                                 lambda: self._restart_listeners(names))
            else:
                self._next()
        self._send("server.info", {}, look)

    def _restarting(self, step: str, action: Callable[[], None]) -> None:
        self.done.append(self.step)
        self.step_done.emit(self.step)
        self.step = step
        self.progress.emit(step)
        action()

    def _store_settings(self) -> None:
        pending = self._settings_to_send()
        client = self.client
        assert client is not None   # connected by the step before

        def send_next(_result: Any = None) -> None:
            if not pending:
                self._next()
                return
            name, value = pending.pop(0)

            def failed(err: Any) -> None:
                message = getattr(err, "message", str(err))
                self._fail(f"the setting '{name}' was refused: {message}")
            client.request("settings.set", {"name": name, "value": value}, send_next, failed)

        send_next()

    def _install_certificate(self) -> None:
        tls = self.plan.tls
        if tls[0] == "generate":
            if self.plan.rerun and self.current.get("_tls_hostname") == tls[1]:
                self._next()       # the same self-signed certificate: keep it
                return
            self._send("tls.generate", {"hostname": tls[1]}, lambda _r: self._next())
        else:
            self._send("tls.import", {"cert": tls[1], "key": tls[2]}, lambda _r: self._next())

    def _restart_process(self) -> None:
        client = self.client
        assert client is not None
        seen_down = [False]

        def down() -> None:
            seen_down[0] = True
        client.disconnected.connect(down)

        def up() -> bool:
            if seen_down[0] and client.is_connected:
                client.disconnected.disconnect(down)
                return True
            return False
        def wait(_result: Any = None) -> None:
            seen_down[0] = seen_down[0] or not client.is_connected
            self._wait_for(up, "the service did not come back after its restart", kick=client.retry_now)

        def refused(err: Any) -> None:
            # The service may close the channel before its answer is read: going away is what we asked.
            if getattr(err, "code", "") == "unavailable":
                wait()
            else:
                self._fail(getattr(err, "message", str(err)))
        client.request("service.shutdown", {"restart": True}, wait, refused)

    def _restart_listeners(self, names: list[str]) -> None:
        pending = list(names)

        def next_one(_r: Any = None) -> None:
            if not pending:
                self._next()
                return
            name = pending.pop(0)
            self._send("service.control", {"action": "restart", "listener": name}, next_one)
        next_one()

    def _check_listeners(self) -> None:
        def check(status: dict[str, Any]) -> None:
            broken = [f"{item.get('name')}: {item.get('error') or item.get('state')}"
                      for item in status.get("listeners") or []
                      if item.get("state") != "running" and item.get("name") in self._wanted_listeners()]
            if broken:
                self._fail("these listeners are not running: " + "; ".join(broken) +
                           ". Choose other ports (Back), or stop the program that uses them.")
            else:
                self._next()
        self._send("service.status", {}, check)

    def _wanted_listeners(self) -> set[str]:
        return {LISTENER_OF[k] for k in PORT_SETTINGS if self.plan.ports.get(k)}

    def _add_domain(self) -> None:
        def added(info: dict[str, Any]) -> None:
            self.created_domain = str(info.get("name") or self.plan.domain)
            self._next()
        self._send("domain.add", {"name": self.plan.domain}, added)

    def _add_mailbox(self) -> None:
        params: dict[str, Any] = {"address": self.plan.address}
        if self.plan.auth == "passwordfile":
            params["password"] = self.plan.password

        def added(info: dict[str, Any]) -> None:
            self.mailbox_info = dict(info)
            self._next()
        self._send("mailbox.add", params, added)

    # -- undo ----------------------------------------------------------------------------------------
    def _undo(self, then: Callable[[], None]) -> None:
        """Take back what this run created, newest first; ``then`` runs when it is all undone."""
        def stop_process() -> None:
            pid = self.started_pid
            if pid is None:
                remove_dir()
                return
            if self.client is not None and self.client.is_connected:
                self.client.request("service.shutdown", {"restart": False}, lambda _r: None, lambda _e: None)
            else:
                service_process.terminate(pid)
            waited = [0]
            timer = QTimer(self)
            timer.setInterval(POLL_MS)

            def tick() -> None:
                waited[0] += POLL_MS
                if service_process.is_alive(pid) and waited[0] < 15_000:
                    if waited[0] == 5_000:
                        service_process.terminate(pid)
                    return
                timer.stop()
                self.started_pid = None
                remove_dir()
            timer.timeout.connect(tick)
            timer.start()

        def remove_dir() -> None:
            if self.client is not None and self.plan.rerun is False and self.created_data_dir:
                self.client.stop()
            if self.created_data_dir:
                shutil.rmtree(self.plan.data_dir, ignore_errors=True)
                self.created_data_dir = False
            then()

        if self.created_domain and self.client is not None and self.client.is_connected:
            name, self.created_domain = self.created_domain, ""
            self.client.request("domain.delete", {"name": name}, lambda _r: stop_process(), lambda _e: stop_process())
        else:
            stop_process()
