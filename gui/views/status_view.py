"""The server node's "Service Status" tab: listener states, small live charts of the last hour or
day (``stats.history``, gui/views/charts.py), live counters, the newest lines of the service log
(``log.recent``: what the logging level lets through), remote administration, and the mail
store's problems (entries its repair could not fix).

It refreshes on the service's ``service.state`` events and, while visible, every two seconds
(counters move without an event for each session). Nothing here blocks: every read is a request.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.catalog import LISTENERS, TlsMode
from gui import icons
from gui.counters import counter_label, counter_order, counter_text
from gui.views.charts import StatsCharts

POLL_MS = 2000
CHARTS_EVERY_S = 10   # the history moves once a minute: ask for it on every fifth poll at most
PROBLEMS_SHOWN = 20
COUNTER_COLUMNS = 2   # label and value twice: the page stays narrower than the default result pane
LOGGING_LABELS = ["None", "Minimum", "Medium", "Maximum"]
STATE_WORDS = {"running": "running", "paused": "paused", "stopped": "stopped", "partial": "partly running"}
FINGERPRINT_BYTES_PER_LINE = 16   # SHA-256: two lines of 47 characters
TLS_WORDS = {TlsMode.STARTTLS: "STARTTLS", TlsMode.IMPLICIT: "TLS", TlsMode.NONE: ""}


def tls_word(listener: dict[str, Any]) -> str:
    """The listeners table's TLS column: STARTTLS, TLS or nothing, from the catalog's TLS mode
    (the status report's ``tls`` says only whether the port speaks TLS from the first byte)."""
    spec = LISTENERS.get(str(listener.get("name", "")))
    if spec is not None:
        return TLS_WORDS[spec.tls]
    return "TLS" if listener.get("tls") is True else ""


def listener_failures(status: dict[str, Any]) -> list[str]:
    """One line per listener that is not running because of an error (a port taken, no right to
    bind it): what a person needs to see after Start, not only "(Stopped)"."""
    lines = []
    for item in status.get("listeners") or []:
        if item.get("error") and item.get("state") != "running":
            lines.append(f"{item.get('name', '?')} (port {item.get('port', '?')}): {item['error']}")
    return lines


def fingerprint_lines(fingerprint: str, per_line: int = FINGERPRINT_BYTES_PER_LINE) -> str:
    """'3F:A1:…' broken into lines of ``per_line`` bytes, each but the last ending in its colon: the same
    characters in the same order, so it compares byte for byte with ``winpop status`` and the trust question."""
    pairs = fingerprint.split(":")
    lines = [":".join(pairs[i:i + per_line]) for i in range(0, len(pairs), per_line)]
    return ":\n".join(lines)


def _mb(n: Any) -> str:
    try:
        return f"{int(n) / 2**20:,.1f} MB"
    except (TypeError, ValueError):
        return "?"


class _LogTable(QTableWidget):
    """A table that asks only for its minimum height: the scroll area around the page sizes the page
    by its preferred height (word-wrapped labels), and the log should take what is left, not more."""

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.minimumHeight())


def _table(headers: list[str], kind: type[QTableWidget] = QTableWidget) -> QTableWidget:
    t = kind(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(t.fontMetrics().height() + 6)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.horizontalHeader().setStretchLastSection(True)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.setAlternatingRowColors(True)
    return t


def _fit_rows(table: QTableWidget) -> None:
    """Make ``table`` exactly as tall as its header and rows: all listeners show without scrolling."""
    table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    header = table.horizontalHeader().sizeHint().height()
    too_wide = table.horizontalHeader().length() > table.viewport().width()
    scroll = table.horizontalScrollBar().sizeHint().height() if too_wide else 0
    table.setFixedHeight(header + rows + scroll + 2 * table.frameWidth())


class StatusView(QWidget):
    """Service state per listener, counters and the newest service log lines."""

    def __init__(self, client: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._client = client
        self.logging_level = 2
        self.state_icon = QLabel()
        self.state_label = QLabel("Waiting for the service…")
        self.state_label.setStyleSheet("font-size: 11pt; font-weight: bold;")
        head = QHBoxLayout()
        head.addWidget(self.state_icon)
        head.addWidget(self.state_label, 1)
        self.certificate_label = QLabel()      # subject and expiry; red 30 days ahead (set_certificate)
        self.certificate_label.setWordWrap(True)
        self.certificate_label.setVisible(False)
        self.key_label = QLabel()              # a server key other than the database's (set_key_problem)
        self.key_label.setWordWrap(True)
        self.key_label.setStyleSheet("color: #a4262c; font-weight: bold;")
        self.key_label.setVisible(False)
        self.disk_label = QLabel()             # a full or nearly full disk, with the numbers (set_disk)
        self.disk_label.setWordWrap(True)
        self.disk_label.setVisible(False)
        self.listeners = _table(["Listener", "Protocol", "State", "Address", "Port", "TLS", "Sessions"])
        # What the mail store could not repair (service.status store_problems): hidden while empty.
        self.problems_box = QGroupBox("Mail store problems")
        self.problems_box.setStyleSheet("QGroupBox { color: #a4262c; font-weight: bold; }")
        self.problems = _table(["Path", "Problem"])
        self.problems.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.problems.setMaximumHeight(self.problems.fontMetrics().height() * 9)
        self.problems_note = QLabel()
        self.problems_note.setWordWrap(True)
        problems_layout = QVBoxLayout(self.problems_box)
        problems_layout.addWidget(self.problems_note)
        problems_layout.addWidget(self.problems)
        self.problems_box.setVisible(False)
        self.counters_box = QGroupBox("Counters")
        self.counters_grid = QGridLayout(self.counters_box)
        self.counters_grid.setVerticalSpacing(2)
        self._counter_labels: dict[str, QLabel] = {}
        self.events_box = QGroupBox("Service log")
        self.events = _table(["Time", "Level", "Source", "Message"], _LogTable)
        self.events.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.events.setWordWrap(False)
        # The log gives way to the listeners and counters: two lines at least, the rest of the page at most.
        self.events.setMinimumHeight(self.events.horizontalHeader().sizeHint().height()
                                     + 2 * self.events.verticalHeader().defaultSectionSize() + 2)
        QVBoxLayout(self.events_box).addWidget(self.events)
        # The per-minute history as small charts, below the listeners (hidden for an older service).
        self.charts_box = QGroupBox("Activity")
        self.charts = StatsCharts()
        self.charts.period_changed.connect(lambda _minutes: self.refresh_charts(force=True))
        QVBoxLayout(self.charts_box).addWidget(self.charts)
        self._charts_asked = 0.0               # time.monotonic() of the last stats.history request
        self.remote_label = QLabel()          # remote administration: on or off, and its port
        self.remote_label.setWordWrap(True)
        self.remote_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.remote_label.setStyleSheet("color: #555;")
        # The certificate fingerprint a remote console asks the user to compare: one unbreakable string,
        # shown in two lines of 16 bytes (each line ends at a colon), with Copy for the exact text.
        self.fingerprint_box = QWidget()
        self.fingerprint: str = ""            # as the service gives it: what Copy copies
        self.fingerprint_title = QLabel("Certificate SHA-256 fingerprint:")
        self.fingerprint_title.setStyleSheet("color: #555;")
        self.fingerprint_label = QLabel()
        fixed = QFont(self.font())            # the page's size (it follows the text scale), fixed-width
        fixed.setStyleHint(QFont.StyleHint.Monospace)
        fixed.setFamilies(["monospace"])
        self.fingerprint_label.setFont(fixed)
        self.fingerprint_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fingerprint_label.setAccessibleName("Certificate SHA-256 fingerprint")
        self.copy_fingerprint = QPushButton("Copy")
        self.copy_fingerprint.setToolTip("Copy the fingerprint, to compare it with what a remote console shows")
        self.copy_fingerprint.clicked.connect(
            lambda: QApplication.clipboard().setText(self.fingerprint))
        fingerprint_layout = QGridLayout(self.fingerprint_box)   # the title above: the lines keep their width
        fingerprint_layout.setContentsMargins(0, 0, 0, 0)
        fingerprint_layout.addWidget(self.fingerprint_title, 0, 0, 1, 3)
        fingerprint_layout.addWidget(self.fingerprint_label, 1, 0)
        fingerprint_layout.addWidget(self.copy_fingerprint, 1, 1, Qt.AlignmentFlag.AlignTop)
        fingerprint_layout.setColumnStretch(2, 1)
        self.fingerprint_box.setVisible(False)
        self._use_audit = False               # an older service without log.recent
        listeners_box = QGroupBox("Listeners")
        QVBoxLayout(listeners_box).addWidget(self.listeners)
        # The page scrolls as a whole rather than making the window taller: a service that has counted
        # everything has some twenty counters. The listeners come first, so they are always in view.
        page = QWidget()
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.scroll_area)
        layout = QVBoxLayout(page)
        layout.setSpacing(4)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(head)
        layout.addWidget(self.certificate_label)
        layout.addWidget(self.key_label)
        layout.addWidget(self.disk_label)
        layout.addWidget(self.problems_box)
        layout.addWidget(listeners_box, 0)   # as tall as its rows (_fit_rows): the log takes the rest
        layout.addWidget(self.charts_box, 0)
        layout.addWidget(self.counters_box, 0)
        layout.addWidget(self.events_box, 3)
        layout.addWidget(self.remote_label)
        layout.addWidget(self.fingerprint_box)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.refresh)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        _fit_rows(self.listeners)   # a narrow window adds the horizontal scroll bar

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._client.is_connected:
            self._client.request("server.info", {}, self.set_remote_admin, lambda _e: None)
        self.refresh()
        self._timer.start()

    def hideEvent(self, event: Any) -> None:
        self._timer.stop()
        self._charts_asked = 0.0   # shown again: fresh charts at once
        super().hideEvent(event)

    def refresh(self) -> None:
        if not self._client.is_connected:
            return
        self._client.request("service.status", {}, self.apply_status, lambda _e: None)
        self.refresh_charts()
        if self._use_audit:
            self._client.request("audit.list", {"limit": 50}, self._apply_audit, lambda _e: None)
        else:
            self._client.request("log.recent", {"limit": 200}, self._apply_log, self._log_failed)

    def refresh_charts(self, *, force: bool = False) -> None:
        """Ask for the charts' history: on the page's poll, every CHARTS_EVERY_S at most (or now)."""
        if not self._client.is_connected or not self.isVisible() or self.charts_box.isHidden():
            return   # drawn only while the page is on screen (and the service knows the op)
        now = time.monotonic()
        if not force and now - self._charts_asked < CHARTS_EVERY_S:
            return
        self._charts_asked = now
        self._client.request("stats.history", {"minutes": self.charts.minutes}, self.charts.apply_history,
                             self._charts_failed)

    def _charts_failed(self, error: Any) -> None:
        if getattr(error, "code", "") == "invalid":   # a service that does not know stats.history
            self.charts_box.setVisible(False)

    def set_logging_level(self, level: Any) -> None:
        try:
            self.logging_level = int(level)
        except (TypeError, ValueError):
            return
        name = LOGGING_LABELS[self.logging_level] if 0 <= self.logging_level < 4 else str(level)
        self.events_box.setTitle(f"Service log (logging level: {name})" if not self._use_audit
                                 else f"Recent changes (logging level: {name})")

    def apply_status(self, status: dict[str, Any]) -> None:
        state = str(status.get("state", "unknown"))
        self.state_icon.setPixmap(icons.server_icon(state).pixmap(32, 32))
        self.state_label.setText(f"The POP3 Service is {STATE_WORDS.get(state, state)}.")
        rows = status.get("listeners") or []
        self.listeners.setRowCount(len(rows))
        for r, item in enumerate(rows):
            spec = LISTENERS.get(str(item.get("name", "")))
            values = [spec.label if spec else item.get("name", ""), str(item.get("kind", "")).upper(),
                      item.get("state", ""), item.get("address", ""), item.get("port", ""), tls_word(item),
                      item.get("sessions", "")]
            failed = bool(item.get("error")) and item.get("state") != "running"
            if failed:
                values[2] = f"{values[2]}: {item['error']}"
            for c, value in enumerate(values):
                cell = QTableWidgetItem("" if value is None else str(value))
                if c in (4, 6):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if c == 0:
                    cell.setToolTip(str(item.get("name", "")))   # the name winpop and the settings use
                if failed and c == 2:
                    cell.setForeground(QBrush(QColor("#a4262c")))
                    cell.setToolTip(str(item["error"]))
                self.listeners.setItem(r, c, cell)
        _fit_rows(self.listeners)
        self.set_disk(status.get("disk") or [])
        self.set_store_problems(status.get("store_problems") or {})
        counters = status.get("counters") or {}
        for key, value in sorted(counters.items(), key=lambda kv: counter_order(kv[0])):
            if key not in self._counter_labels:
                name = QLabel(counter_label(key) + ":")
                shown = QLabel()
                shown.setAlignment(Qt.AlignmentFlag.AlignRight)
                n = len(self._counter_labels)
                row, column = divmod(n, COUNTER_COLUMNS)
                self.counters_grid.addWidget(name, row, column * 2)
                self.counters_grid.addWidget(shown, row, column * 2 + 1)
                self._counter_labels[key] = shown
            self._counter_labels[key].setText(counter_text(key, value))

    def set_certificate(self, tls: dict[str, Any]) -> None:
        """The TLS certificate line: subject and expiry, a warning within 30 days of it."""
        if not tls:
            self.certificate_label.setVisible(False)
            return
        if tls.get("error"):
            text, warn = f"TLS certificate: cannot be read ({tls['error']})", True
        else:
            days = tls.get("days_left")
            expiry = str(tls.get("not_after", ""))[:10]
            subject = tls.get("subject", "")
            if isinstance(days, int) and days < 0:
                text, warn = f"TLS certificate {subject} expired on {expiry}: renew it now.", True
            elif tls.get("expires_soon"):
                text, warn = (f"TLS certificate {subject} expires on {expiry}, in {days} days: renew it "
                              "(File → Set Up the Server) before mail clients refuse it.", True)
            else:
                kind = " (self-signed)" if tls.get("self_signed") else ""
                text, warn = f"TLS certificate {subject}{kind}, valid until {expiry}.", False
        self.certificate_label.setText(text)
        self.certificate_label.setStyleSheet("color: #a4262c; font-weight: bold;" if warn else "")
        self.certificate_label.setVisible(True)

    def set_store_problems(self, problems: dict[str, Any]) -> None:
        """The entries of the mail root that the store could not repair: path and reason, a short list."""
        items = list(problems.get("items") or [])[:PROBLEMS_SHOWN]
        total = int(problems.get("total") or 0)
        self.problems_box.setVisible(total > 0)
        if not total:
            self.problems.setRowCount(0)
            return
        more = f" The first {len(items)} are shown; the service log has the others." if total > len(items) else ""
        self.problems_note.setText(f"{total} entr{'y' if total == 1 else 'ies'} in the root mail directory could "
                                   f"not be repaired; the rest of the store works. Fix them, then restart the "
                                   f"service to check again.{more}")
        self.problems.setRowCount(len(items))
        for r, item in enumerate(items):
            for c, key in enumerate(("path", "problem")):
                cell = QTableWidgetItem(str(item.get(key, "")))
                cell.setToolTip(cell.text())   # long paths and reasons are elided in the cell
                self.problems.setItem(r, c, cell)
        self.problems.resizeColumnToContents(0)

    def set_key_problem(self, text: str) -> None:
        """Shown in red while the service's server key does not open the database's secrets."""
        self.key_label.setText(f"Server key: {text}" if text else "")
        self.key_label.setVisible(bool(text))

    def set_disk(self, disks: list[dict[str, Any]]) -> None:
        """Red "disk full" (orange "disk low") with free and total space; hidden while all is well."""
        lines = []
        for disk in disks:
            state = disk.get("state")
            if state not in ("full", "low"):
                continue
            free, total = _mb(disk.get("free_bytes", 0)), _mb(disk.get("total_bytes", 0))
            if state == "full":
                lines.append(f"Disk full: the {disk.get('what', 'disk')} ({disk.get('path', '')}) has {free} free of "
                             f"{total}. New mail is refused and nothing can be changed until space is freed; "
                             "users can still read and delete their mail.")
            else:
                lines.append(f"Disk low: the {disk.get('what', 'disk')} ({disk.get('path', '')}) has {free} free "
                             f"of {total}.")
        full = any(d.get("state") == "full" for d in disks)
        self.disk_label.setText("\n".join(lines))
        self.disk_label.setStyleSheet(f"color: {'#a4262c' if full else '#8a5300'}; font-weight: bold;")
        self.disk_label.setVisible(bool(lines))

    def counter_text(self, key: str) -> str:
        label = self._counter_labels.get(key)
        return label.text() if label else ""

    def set_remote_admin(self, info: dict[str, Any]) -> None:
        """Remote administration's port and the certificate fingerprint remote consoles must see."""
        remote = info.get("admin_tcp") or {}
        fingerprint = (info.get("tls") or {}).get("fingerprint", "")
        if remote.get("state") == "running":
            text = f"Remote administration: on, port {remote.get('port')} (TLS, token)."
        elif remote.get("error"):
            text = f"Remote administration: not running ({remote['error']})."
        else:
            text = "Remote administration: off (Server Properties → Security)."
        self.remote_label.setText(text)
        self.fingerprint_label.setText(fingerprint_lines(fingerprint))
        self.fingerprint = fingerprint
        self.fingerprint_box.setVisible(bool(fingerprint))

    def _log_failed(self, error: Any) -> None:
        if getattr(error, "code", "") == "invalid":   # a service that does not know log.recent
            self._use_audit = True
            self.set_logging_level(self.logging_level)

    def _apply_log(self, result: dict[str, Any]) -> None:
        rows = result.get("items") or []    # newest first
        self.events.setRowCount(len(rows))
        for r, item in enumerate(rows):
            when = str(item.get("at", "")).replace("T", " ")[:19]
            level = str(item.get("level", ""))
            values = [when, level, item.get("source", ""), item.get("message", "")]
            for c, value in enumerate(values):
                cell = QTableWidgetItem(str(value))
                if c == 1 and level in ("ERROR", "CRITICAL"):
                    cell.setForeground(Qt.GlobalColor.darkRed)
                elif c == 1 and level == "WARNING":
                    cell.setForeground(Qt.GlobalColor.darkYellow)
                if c == 3:
                    cell.setToolTip(cell.text())   # a long message is elided in the cell; the tooltip has it whole
                self.events.setItem(r, c, cell)
        if rows:   # time, level and source as wide as they are; the message takes the rest (cut: its tooltip)
            for column in range(self.events.columnCount() - 1):
                self.events.resizeColumnToContents(column)

    def _apply_audit(self, result: dict[str, Any]) -> None:
        rows = result.get("items") or []
        self.events.setRowCount(len(rows))
        for r, item in enumerate(rows):
            when = str(item.get("at", "")).replace("T", " ")[:19]
            values = [when, item.get("outcome", ""), item.get("actor", ""),
                      f"{item.get('op', '')} {item.get('target', '')}".strip()]
            for c, value in enumerate(values):
                self.events.setItem(r, c, QTableWidgetItem(str(value)))
