"""The PySide6 6.12 reference leak must not be able to free None or True in a long session."""
from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QPushButton

import gui  # noqa: F401  (importing gui pins the singletons)


def test_many_slot_calls_cannot_free_none_or_true(qtbot):
    button = QPushButton()
    qtbot.addWidget(button)
    calls = []
    button.clicked.connect(lambda: calls.append(1))
    for _ in range(20_000):          # more than None's usual ~5,000 references
        button.click()
    QApplication.processEvents()
    assert len(calls) == 20_000
    if sys.version_info < (3, 12):
        assert sys.getrefcount(None) > 1 << 39 and sys.getrefcount(True) > 1 << 39
