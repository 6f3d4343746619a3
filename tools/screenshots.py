"""Render the console's screenshots offscreen into docs/screenshots/ (one command, no display).

    python tools/screenshots.py [--out DIR]

The console runs against the in-memory demo service (tests/fake_service.py), so the pictures are the
same on every machine.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QEventLoop, QItemSelectionModel, QSettings, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402


def settle(ms: int = 150) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: QWidget, path: Path) -> None:
    settle(60)
    widget.grab().save(str(path))
    print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    app = QApplication.instance() or QApplication(sys.argv)
    app.setStyle("Fusion")

    from gui.views.main_window import MainWindow
    from tests.fake_service import FakeServiceClient, demo_service

    settings = QSettings(str(out / ".screenshots.ini"), QSettings.Format.IniFormat)
    settings.clear()
    client = FakeServiceClient(demo_service())
    window = MainWindow(client, settings=settings)
    window.resize(1000, 620)
    window.show()
    client.start()
    settle(300)
    save(window, out / "main-window-server.png")

    window.server_tabs.setCurrentWidget(window.status_view)
    settle(300)
    save(window, out / "main-window-status.png")
    window.server_tabs.setCurrentWidget(window.domain_pane)

    window.select_domain("contoso.com")
    settle(300)
    pane = window.mailbox_pane
    row = window.mailbox_model.row_of("alice@contoso.com")
    pane.view.selectionModel().select(window.mailbox_model.index(row, 0),
                                      QItemSelectionModel.SelectionFlag.ClearAndSelect
                                      | QItemSelectionModel.SelectionFlag.Rows)
    save(window, out / "main-window-domain.png")

    window.do_new_mailbox()
    dialog = window.dialog
    dialog.name_edit.setText("carol")
    dialog.password.setText("correct horse")
    dialog.confirm.setText("correct horse battery")
    save(dialog, out / "new-mailbox-invalid.png")
    dialog.confirm.setText("correct horse")
    save(dialog, out / "new-mailbox.png")
    dialog.ok_button.click()
    settle(200)
    save(window.dialog, out / "mailbox-created.png")
    window.dialog.accept()

    window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
    window.tree.setFocus()
    window.do_properties()
    settle(200)
    props = window.dialog
    save(props, out / "server-properties.png")
    props.tabs.setCurrentIndex(2)
    save(props, out / "server-properties-smtp.png")
    props.tabs.setCurrentIndex([props.tabs.tabText(i) for i in range(props.tabs.count())].index("Security"))
    save(props, out / "server-properties-security.png")
    props.reject()
    settle(100)

    # Issue 5: the outgoing queue, the bans, the open-relay test, remote administration.
    window.tree.setCurrentIndex(window.tree_model.index_of(window.tree_model.server))
    window.server_tabs.setCurrentWidget(window.queue_view)
    settle(300)
    window.queue_view.table.selectRow(0)
    save(window, out / "main-window-queue.png")
    window.server_tabs.setCurrentWidget(window.bans_view)
    settle(300)
    save(window, out / "main-window-bans.png")
    client.service.tokens.append({"id": 1, "name": "laptop of the office manager", "created_by": "root (uid 0)",
                                  "created_at": "2026-02-20T08:15:00+00:00",
                                  "last_used_at": "2026-03-02T08:02:11+00:00",
                                  "last_used_from": "192.0.2.44"})
    window.server_tabs.setCurrentWidget(window.tokens_view)
    settle(300)
    save(window, out / "main-window-remote-admin.png")
    window.tokens_view.new_token()
    window.tokens_view.dialog.name_edit.setText("reception desk")
    window.tokens_view.dialog._on_ok()
    settle(300)
    save(window.tokens_view.dialog, out / "new-token.png")
    window.tokens_view.dialog.accept()
    window.server_tabs.setCurrentWidget(window.domain_pane)
    window.do_relay_test()
    settle(300)
    save(window.dialog, out / "relay-test.png")
    window.dialog.close()

    from gui.remote_servers import TokenVault
    from tests.fake_service import FakeService
    other = FakeService(hostname="mail.fabrikam.com")
    other.seed({"fabrikam.com": ["jane", "john"], "fabrikam.net": ["orders"]})
    fingerprint = "3F:A1:9C:07:5B:E2:48:D0:11:6A:C3:92:7E:04:B8:5D:2C:F9:60:A7:1E:83:D4:56:9B:0F:E7:32:C8:4A:15:6D"
    client.remote_services["mail.fabrikam.com:9110"] = (other, "p3t_demo", fingerprint)
    vault = TokenVault(backend=None)
    vault.reason = "this computer has no secure system keyring (such as GNOME Keyring or KWallet)"
    window.server_switch.vault = vault
    window.do_connect()
    dialog = window.dialog
    dialog.remote.setChecked(True)
    dialog.computer.setCurrentText("mail.fabrikam.com")
    dialog.token.setText("p3t_demo")
    save(dialog, out / "connect-computer.png")
    dialog.accept()
    settle(200)
    save(window.dialog, out / "certificate-first-use.png")
    window.dialog.done(window.dialog.StandardButton.Yes)
    settle(400)
    save(window, out / "main-window-remote.png")
    window.close()
    (out / ".screenshots.ini").unlink(missing_ok=True)
    wizard_screenshots(out)
    return 0


def wizard_screenshots(out: Path) -> None:
    """Every page of the setup wizard as a user without administrator rights sees it."""
    from gui.wizard import checks, pages
    from gui.wizard.setup_wizard import Page, SetupWizard
    checks.can_bind_privileged = lambda: False      # the common case: a user, not root
    pages._user_name = lambda: "alice"
    home = Path("/home/alice/.local/share/pop3-service")
    wizard = SetupWizard(home, current={"hostname": "mail.example.com"})
    SetupWizard.system_service_unavailable = lambda self: (
        "installing a system service needs administrator rights: start the console with 'sudo python3 main.py'.")
    wizard.resize(720, 560)
    wizard.show()
    settle(200)
    save(wizard, out / "wizard-1-welcome.png")
    wizard.next()
    save(wizard, out / "wizard-2-service.png")
    wizard.next()
    wizard.page_of(Page.AUTH).buttons["directory"].setChecked(True)
    save(wizard, out / "wizard-3-authentication.png")
    wizard.next()
    directory = wizard.page_of(Page.DIRECTORY)
    directory.tester = lambda *v: (True, "Connected to ldaps://dc1.example.com over TLS, bound as "
                                         "cn=pop3svc,ou=Services,dc=example,dc=com, and found dc=example,dc=com.")
    directory.server.setText("ldaps://dc1.example.com")
    directory.base_dn.setText("dc=example,dc=com")
    directory.bind_dn.setText("cn=pop3svc,ou=Services,dc=example,dc=com")
    directory.password.setText("secret-bind-password")
    save(wizard, out / "wizard-4-directory-untested.png")
    directory.test_connection()
    for _ in range(50):
        if not directory.testing:
            break
        settle(20)
    save(wizard, out / "wizard-4-directory.png")
    wizard.back()
    wizard.page_of(Page.AUTH).buttons["passwordfile"].setChecked(True)
    wizard.next()
    save(wizard, out / "wizard-5-storage.png")
    wizard.next()
    ports = wizard.page_of(Page.PORTS)
    ports.spins["port"].setValue(110)
    ports.spins["smtp_port"].setValue(25)
    save(wizard, out / "wizard-6-ports-invalid.png")
    ports.use_all.click()
    save(wizard, out / "wizard-6-ports.png")
    wizard.next()
    save(wizard, out / "wizard-7-security.png")
    wizard.next()
    first = wizard.page_of(Page.FIRST_MAILBOX)
    first.domain.setText("example.com")
    first.mailbox.setText("alice")
    first.password.setText("correct horse")
    first.confirm.setText("correct hors")
    save(wizard, out / "wizard-8-first-mailbox-invalid.png")
    first.confirm.setText("correct horse")
    save(wizard, out / "wizard-8-first-mailbox.png")
    wizard.next()
    save(wizard, out / "wizard-9-summary.png")
    wizard.page_of(Page.SUMMARY).progress.setText(
        "✔ start the service<br>✔ connect to the service<br>✔ store the settings<br>"
        "✔ install the TLS certificate<br>… put the settings into effect")
    save(wizard, out / "wizard-9-summary-applying.png")
    wizard._apply_failed("check the listeners", "these listeners are not running: pop3: cannot listen on "
                         "0.0.0.0:1110: Address already in use. Choose other ports (Back), or stop the program "
                         "that uses them.")
    save(wizard, out / "wizard-9-summary-failed.png")
    wizard.close()


if __name__ == "__main__":
    raise SystemExit(main())
