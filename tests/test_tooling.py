"""The checked-in tooling stays clean: ruff (style, bugbear, no imports inside functions), mypy with
the pyproject configuration, and import-linter's layer contracts (DESIGN §1). Each runs as its own
process, as a developer or CI would run it, and a finding fails the test with the tool's output."""
from __future__ import annotations

import re
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Paths still being reworked on other branches (the SMTP split, the console's typing): their
# findings do not fail these tests yet. The lead empties this after merging those branches, and
# then the tests hold the whole tree to zero findings (`ruff check .`, plain `mypy`).
NOT_YET_CHECKED: tuple[str, ...] = ()

_FINDING = re.compile(r"^(?P<path>[^\s:]+\.py):\d+:")


def _run(*command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _not_yet_checked(path: str) -> bool:
    return any(fnmatch(path, pattern) or fnmatch(path, f"{pattern}/*") for pattern in NOT_YET_CHECKED)


def test_ruff_finds_nothing():
    excluded = [arg for pattern in NOT_YET_CHECKED for arg in ("--extend-exclude", pattern)]
    result = _run(sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", *excluded, ".")
    assert result.returncode == 0, f"ruff check found:\n{result.stdout}{result.stderr}"


def test_mypy_finds_nothing():
    """Plain ``mypy``: the files, flags and per-module settings all come from pyproject.toml."""
    result = _run(sys.executable, "-m", "mypy")
    errors = [(match["path"], line) for line in result.stdout.splitlines()
              if (match := _FINDING.match(line)) and ": error:" in line]
    # 1 with no error line is a configuration mistake; 2 is a crash.
    assert result.returncode == 0 or (result.returncode == 1 and errors), f"mypy:\n{result.stdout}{result.stderr}"
    findings = [line for path, line in errors if not _not_yet_checked(path)]
    assert not findings, "mypy found:\n" + "\n".join(findings)


def test_import_contracts_are_kept():
    """The layers of DESIGN §1 as import-linter contracts ([tool.importlinter] in pyproject.toml),
    each of them present, so lint-imports cannot pass by checking nothing."""
    result = _run(sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                  "lint_imports_command(['--no-cache', '--no-logo'])")
    assert result.returncode == 0, f"lint-imports:\n{result.stdout}{result.stderr}"
    kept = set(re.findall(r"^(.+) KEPT$", result.stdout, flags=re.MULTILINE))
    assert kept >= {
        "core imports neither the service, the console nor Qt",
        "the service never imports the console or Qt",
        "the console never imports the service or the database",
        "the catalog, the parsers, the sealer and the op table know no database",
        "no import cycles between the modules and packages of core and service",
    }, result.stdout
