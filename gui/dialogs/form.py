"""Small pieces the dialogs share: a reason label that sits beside a field, a name check, password checks,
and the sizing that keeps text whole at any text scale."""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QWidget

from core import passwords
from core.errors import Invalid

# The line height of the font the default sizes were drawn for (a 9 pt sans serif): a larger text scale
# grows the default sizes in proportion, so the text that fitted at 100 % fits at 125 % and 150 %.
DESIGN_LINE_HEIGHT = 14


def text_scaled(widget: QWidget, width: int, height: int) -> QSize:
    """A default size given in pixels at 100 % text, grown by the widget's font (never shrunk), the growth
    kept on the screen."""
    factor = max(1.0, widget.fontMetrics().height() / DESIGN_LINE_HEIGHT)
    size = QSize(round(width * factor), round(height * factor))
    screen = widget.screen() or QApplication.primaryScreen()
    if screen is not None:    # the growth stops at the screen's edge; the size drawn for 100 % stays as it was
        size = size.boundedTo(screen.availableGeometry().size()).expandedTo(QSize(width, height))
    return size


class KeepsTextWhole(QObject):
    """Grows its window whenever the layout asks for more height than the window has at its width.

    Qt sizes a window from its labels' minimum sizes, which ignore word wrap at the window's real width:
    a wrapped label then loses its last line at a larger text scale, or when a reason line appears
    beneath it. The layout's height-for-width is the true need; this applies it."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self._window = window
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt override
        # The garbage collector may clear this wrapper's attributes (a cycle through the window) while Qt
        # still delivers the window's last events: then there is nothing left to fit.
        window = self.__dict__.get("_window")
        if window is not None and watched is window and event.type() in (QEvent.Type.LayoutRequest,
                                                                          QEvent.Type.Show):
            self.fit()
        return False

    def fit(self) -> None:
        window, layout = self._window, self._window.layout()
        if layout is None:
            return
        layout.activate()
        width = max(window.width(), layout.minimumSize().width())
        needed = layout.totalHeightForWidth(width) if layout.hasHeightForWidth() else layout.minimumSize().height()
        if needed > window.height() or width > window.width():
            window.resize(width, max(needed, window.height()))


def keep_text_whole(window: QWidget, width: int, height: int) -> None:
    """Give ``window`` its default size at this text scale and keep its wrapped text whole from then on."""
    window.resize(text_scaled(window, width, height))
    KeepsTextWhole(window)


class Reason(QLabel):
    """Why the field beside it is not acceptable yet (empty and hidden when it is)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setStyleSheet("color: #b00020;")
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setVisible(False)

    def show_reason(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


class Meanwhile(Reason):
    """What another administrator changed while a property sheet was open (amber, not red: the
    field is not wrong, the sheet's view of the server is out of date)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet("color: #8a5300;")


def buddy_label(text: str, buddy: QWidget) -> QLabel:
    """A label whose &-mnemonic focuses ``buddy``: QFormLayout sets the buddy itself only when the
    field is a widget, and shows a literal '&' beside a layout."""
    label = QLabel(text)
    label.setBuddy(buddy)
    return label


def password_problem(password: str, confirm: str) -> tuple[str, str]:
    """(reason for the password field, reason for the confirmation field); empty when fine. The rule
    and its wording are the service's own (core.passwords), so the console explains before sending."""
    return passwords.password_problem(password) or "", passwords.confirmation_problem(password, confirm) or ""


def check_field(text: str, rule: Callable[[str], object], reason: Reason, button: QAbstractButton) -> bool:
    """Run ``rule`` (a core name check that raises Invalid) on a non-empty ``text``, show why it
    fails beside the field, and enable ``button`` only when it passes."""
    problem = ""
    if text.strip():
        try:
            rule(text)
        except Invalid as exc:
            problem = exc.message
    reason.show_reason(problem)
    valid = bool(text.strip()) and not problem
    button.setEnabled(valid)
    return valid
