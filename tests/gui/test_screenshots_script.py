"""tools/screenshots.py: it photographs a real running service (no test double anywhere), it renders
pictures that are not blank, and its list of pictures is exactly what the README and the docs show."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tools import sample_office, screenshots

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "screenshots.py"
SKIP_ENV = "POP3SVC_SKIP_SCREENSHOTS"
PICTURE_REF = re.compile(r"([a-z0-9][a-z0-9-]*)\.png")


def referenced_pictures() -> set[str]:
    """The PNG names the README and the Markdown under docs/ show or mention."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return {name for path in texts for name in PICTURE_REF.findall(path.read_text(encoding="utf-8"))}


def test_the_pictures_are_exactly_those_the_readme_and_docs_reference():
    assert len(set(screenshots.PICTURES)) == len(screenshots.PICTURES), "a picture is taken twice"
    assert set(screenshots.PICTURES) == referenced_pictures()
    assert {p.stem for p in (ROOT / "docs" / "screenshots").glob("*.png")} == set(screenshots.PICTURES)


def test_the_script_uses_no_test_double():
    """The pictures are the product: no module of tests/, no fake service, in the script or its helpers."""
    for path in sorted((ROOT / "tools").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not [m for m in imported if m == "tests" or m.startswith("tests.") or "fake" in m], path.name
        assert "fake" not in path.read_text(encoding="utf-8").lower(), path.name


def test_an_unknown_picture_name_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exited:
        screenshots.parse_args(["--only", "main-window-server,no-such-picture"])
    assert exited.value.code == 2
    assert "no-such-picture" in capsys.readouterr().err


def test_the_busy_minutes_are_a_usage_choice(capsys):
    assert screenshots.parse_args([]).activity_minutes == screenshots.ACTIVITY_MINUTES > 0
    assert screenshots.parse_args(["--activity-minutes", "0"]).activity_minutes == 0
    for wrong in ("-1", "61", "two"):
        with pytest.raises(SystemExit) as exited:
            screenshots.parse_args(["--activity-minutes", wrong])
        assert exited.value.code == 2
    assert "--activity-minutes" in capsys.readouterr().err


def test_the_charts_pictures_are_the_ones_that_wait_for_activity():
    assert set(screenshots.ACTIVITY_PICTURES) == {"main-window-status", "main-window-charts"}
    assert set(screenshots.ACTIVITY_PICTURES) <= set(screenshots.PICTURES)


def test_every_busy_minute_differs_from_the_one_before_in_every_count():
    rows = sample_office.BUSY_MINUTES
    for before, after in zip(rows, rows[1:] + rows[:1], strict=True):
        assert all(a != b for a, b in zip(before, after, strict=True)), (before, after)
    assert all(row[1] > 0 for row in rows), "every minute has POP3 sessions: the script waits for their bars"
    failures = sum(row[2] for row in rows)
    assert failures <= len(sample_office.SCANNED_LOGINS), "each login is tried once a cycle: no ban"


def test_a_minute_is_found_in_the_history_only_once_it_has_ended_and_was_recorded():
    end_minute = 29_000_000                      # the minute now running (epoch seconds // 60)
    result = {"interval": 60, "end": end_minute * 60,
              "series": {"received": [None, 4, 0], "pop3_sessions": [None, 2, 0]}}
    assert sample_office.minute_values(result, end_minute - 1) == {"received": 0, "pop3_sessions": 0}
    assert sample_office.minute_values(result, end_minute - 2) == {"received": 4, "pop3_sessions": 2}
    assert sample_office.minute_values(result, end_minute - 3) is None      # not running then: a gap
    assert sample_office.minute_values(result, end_minute) is None          # not ended yet
    assert sample_office.minute_values(result, end_minute - 4) is None      # before the answer's hour


def _distinct_colours(image: QImage) -> int:
    step_x, step_y = max(1, image.width() // 80), max(1, image.height() // 60)
    return len({image.pixel(x, y) for x in range(0, image.width(), step_x) for y in range(0, image.height(), step_y)})


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get(SKIP_ENV)), reason=f"{SKIP_ENV} is set")
def test_the_script_photographs_a_real_service(tmp_path):
    wanted = ("main-window-server", "main-window-status")
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", ",".join(wanted),
                             "--activity-minutes", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(f"{name}.png" for name in wanted)
    for name in wanted:
        image = QImage(str(tmp_path / f"{name}.png"))
        assert (image.width(), image.height()) == screenshots.WINDOW_SIZE, name
        assert _distinct_colours(image) > 20, f"{name}.png looks blank"
        assert f"wrote {tmp_path / name}.png" in result.stdout
    workdir = re.search(r"^working in (.+)$", result.stdout, flags=re.MULTILINE)
    assert workdir, result.stdout
    assert not Path(workdir[1]).exists(), "the script left its temporary directory (and services) behind"
