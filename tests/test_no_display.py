"""``python3 main.py`` on a machine without a display explains the two ways on and exits 2,
instead of Qt's abort ("could not connect to display", core dumped)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_console(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(extra, POP3SVC_DATA_DIR=str(tmp_path / "data"), XDG_RUNTIME_DIR=str(tmp_path))
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(tmp_path / "data")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


def test_no_display_says_so_and_exits_2(tmp_path: Path) -> None:
    done = run_console(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "no display" in done.stderr
    assert "ssh -X" in done.stderr and "python3 main.py service" in done.stderr and "winpop" in done.stderr
    assert "qt.qpa" not in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert not (tmp_path / "data").exists()   # nothing was set up on the way out


def test_an_empty_display_variable_is_no_display(tmp_path: Path) -> None:
    done = run_console(tmp_path, DISPLAY="", WAYLAND_DISPLAY="")
    assert done.returncode == 2 and "ssh -X" in done.stderr
