"""Render the console's screenshots offscreen into docs/screenshots/ (one command, no display).

    python tools/screenshots.py [--out DIR]

The console runs against the in-memory demo service (gui/testing.py), so the pictures are the
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

    from gui.testing import FakeServiceClient, demo_service
    from gui.views.main_window import MainWindow

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
    props.reject()
    settle(100)
    window.close()
    (out / ".screenshots.ini").unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
