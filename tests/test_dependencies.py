"""Every third-party module the product imports is declared in pyproject.toml, directly or as a
requirement of a declared distribution (issue 13: dnspython was imported but never declared)."""
from __future__ import annotations

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("core", "service", "gui")
OWN = {"core", "service", "gui", "main", "tests"}


def imported_modules(folder: Path) -> dict[str, str]:
    """Top-level names of every absolute import under ``folder`` (function-local ones included),
    each with the first file that imports it."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.partition(".")[0], str(path.relative_to(folder.parent)))
    return found


def requirement_name(requirement: str) -> tuple[str, set[str], str]:
    """'psycopg[binary]>=3.1; python_version>"3"' → ('psycopg', {'binary'}, marker)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?[^;]*(?:;(.*))?", requirement)
    assert match, requirement
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return normalize(match.group(1)), extras, (match.group(3) or "").strip()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_applies(marker: str, extras: set[str]) -> bool:
    """The environment markers pip would honour here (extras and the usual platform tests)."""
    if not marker:
        return True
    wanted = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
    if wanted:
        return any(normalize(w) in {normalize(e) for e in extras} for w in wanted)
    try:
        from packaging.markers import Marker
    except ImportError:   # without packaging, count the requirement: over-inclusive, never a false failure
        return True
    return Marker(marker).evaluate()


def declared_closure() -> set[str]:
    """The project's runtime distributions and, recursively, what they require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [requirement_name(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        name, extras, marker = todo.pop()
        if not marker_applies(marker, set()) or name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue   # reported by test_declared_distributions_are_installed
        for requirement in requires:
            sub, sub_extras, sub_marker = requirement_name(requirement)
            if marker_applies(sub_marker, extras):
                todo.append((sub, sub_extras, ""))
    return seen


def test_declared_distributions_are_installed() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing = []
    for requirement in project["dependencies"]:
        name = requirement_name(requirement)[0]
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    assert not missing, f"declared but not installed (pip install -e .): {missing}"


def test_every_imported_module_is_declared() -> None:
    providers = metadata.packages_distributions()
    declared = declared_closure()
    undeclared = []
    for package in PRODUCT:
        for module, where in imported_modules(ROOT / package).items():
            if module in OWN or module in sys.stdlib_module_names or module == "__future__":
                continue
            distributions = {normalize(d) for d in providers.get(module, [])}
            if not distributions & declared:
                source = sorted(distributions) or "nothing"
                undeclared.append(f"{module} (imported in {where}; installed from {source})")
    assert not undeclared, "imported but not declared in pyproject.toml: " + "; ".join(undeclared)


def test_the_walk_sees_function_local_imports(tmp_path: Path) -> None:
    """The check can fail: an import inside a function, or under ``try``, is found."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text(
        "from . import sibling\n"
        "def lookup():\n    import dns.asyncresolver\n"
        "try:\n    from undeclared_thing.sub import x\nexcept ImportError:\n    x = None\n")
    assert set(imported_modules(tmp_path / "pkg")) == {"dns", "undeclared_thing"}
    assert "dnspython" in declared_closure()
    assert "pyspnego" not in declared_closure()   # a test extra is not a runtime dependency
