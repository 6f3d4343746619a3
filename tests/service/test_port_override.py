"""Issue 13 §5: `winpop get` shows the port a listener really uses when the command line
overrides the stored setting (the test service always runs on free ports given as overrides)."""
from __future__ import annotations


def test_winpop_get_names_the_port_this_run_uses(service):
    stored = service.call("settings.get", name="port")["port"]
    used = service.ports["pop3"]
    assert stored != used
    one = service.winpop("get", "port", check=True).stdout
    assert f"port: {stored} (this run uses port {used} (set on the service's command line)" in one
    table = service.winpop("get", check=True).stdout
    line = next(row for row in table.splitlines() if row.startswith("smtp_port "))
    assert f"this run uses port {service.ports['smtp']}" in line
    # Settings that are not ports, and JSON, are unchanged.
    assert service.winpop("get", "logging", check=True).stdout.strip() == "logging: 2 (Medium)"
    assert '"port":' in service.winpop("--json", "get", "port", check=True).stdout


def test_a_listener_turned_off_on_the_command_line_is_said(tmp_path):
    from tests.support import ServiceProcess
    proc = ServiceProcess(tmp_path / "data", ports={"smtps": 0}).start()
    try:
        out = proc.winpop("get", "smtps_port", check=True).stdout
        assert "no such listener (turned off on the service's command line)" in out
    finally:
        proc.stop()
