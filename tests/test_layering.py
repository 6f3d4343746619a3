"""The dependency direction of DESIGN §1, where it needs a run to be seen. Which package may import
which is import-linter's job ([tool.importlinter] in pyproject.toml, run by tests/test_tooling.py);
what stays here: importing every module of core and service really loads no Qt (an import made by
name at run time is invisible to a static check), and core opens no listening socket."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules(package: str) -> list[str]:
    names = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if "migrations" not in parts:  # alembic scripts run only inside alembic
            names.append(".".join(parts))
    return names


def _loaded_after_importing(modules: list[str]) -> set[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_core_and_service_never_import_qt():
    loaded = _loaded_after_importing(_modules("core") + _modules("service"))
    assert not {m for m in loaded if m.startswith(("PySide6", "shiboken6"))}


def test_core_opens_no_listening_socket():
    for path in (ROOT / "core").rglob("*.py"):
        text = path.read_text()
        assert ".listen(" not in text and "start_server" not in text, path

