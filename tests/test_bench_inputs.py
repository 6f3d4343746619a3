"""The benchmarks are not in the test run, so nothing else notices when a rule of the service
refuses what they send: bench_pop3.py's 7-character password stopped it at the first mailbox once
the password rule (core/passwords.py) came in. Every fixed mailbox password in tests/bench must pass
the rule."""
from __future__ import annotations

import re
from pathlib import Path

from core.passwords import password_problem

BENCH = Path(__file__).resolve().parent / "bench"


def test_every_benchmark_password_passes_the_password_rule():
    found = {f"{path.name}: {value!r}": password_problem(value)
             for path in sorted(BENCH.glob("*.py"))
             for value in re.findall(r'^PASSWORD\s*=\s*"([^"]*)"', path.read_text(), flags=re.M)}
    assert found, "no benchmark password found: the pattern no longer matches"
    assert {where: problem for where, problem in found.items() if problem} == {}
