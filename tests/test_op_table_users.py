"""Everyone who speaks the admin channel agrees with the op table (core/ipc/ops.py): the service's
dispatch, every op the console and winpop send (found by walking their code), and the table itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from core.ipc.ops import EVENTS, OPS, Access, check_implemented
from service.ipc.handlers import HANDLERS, HandlerTable

ROOT = Path(__file__).resolve().parent.parent
SENDERS = sorted((ROOT / "gui").rglob("*.py")) + [ROOT / "service" / "winpop.py"]
SENDING_CALLS = {"request", "call", "_send"}   # IpcClient.request, AdminClient.call, gui.ops._send
# Where the op is a variable, a plumbing function that passes on what its caller named.
PASSED_ON = {("gui/ops.py", "op"), ("gui/wizard/apply.py", "op"), ("gui/ipc_client.py", "op"),
             ("gui/models/paged_table.py", "self.op"), ("gui/views/service_table.py", "self.op")}


_PARAMS_ELSEWHERE = ast.Name(id="params")   # a model's op: its parameters are built in a method


def _op_names(node: ast.expr) -> list[str] | None:
    """The op names an argument can be: a literal, or either side of ``"a" if x else "b"``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _op_names(node.body), _op_names(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def _sent_ops(path: Path) -> list[tuple[str, int, list[str] | str, ast.expr | None, list[ast.keyword]]]:
    """(file, line, op names or the variable's source, params argument, keyword arguments) per call."""
    rel = path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ClassDef):   # a list model or view names its op as a class attribute
            for item in node.body:
                if isinstance(item, ast.Assign) and [ast.unparse(t) for t in item.targets] == ["op"]:
                    names = _op_names(item.value)
                    if names and names != [""]:   # "" in a base class: each subclass names its own
                        found.append((rel, item.lineno, names, _PARAMS_ELSEWHERE, []))
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name not in SENDING_CALLS or not node.args:
            continue
        # The op is the first argument, after the client (gui.ops._send) or a request id (protocol.request).
        position = next((i for i, arg in enumerate(node.args[:2]) if _op_names(arg)), None)
        if position is None:   # a variable: the first argument, or the second after a client or request id
            variable = next((a for a in node.args[:2] if ast.unparse(a) in ("op", "self.op")), node.args[0])
            found.append((rel, node.lineno, ast.unparse(variable), None, []))
            continue
        params = node.args[position + 1] if len(node.args) > position + 1 else None
        # Keyword arguments are the op's parameters for AdminClient.call, callbacks elsewhere.
        found.append((rel, node.lineno, _op_names(node.args[position]) or [], params,
                      node.keywords if name == "call" else []))
    return found


def _named_params(params: ast.expr | None, keywords: list[ast.keyword]) -> tuple[set[str], bool]:
    """The parameter names a call spells out, and whether that is all of them (no variable, no **)."""
    named = {str(k.arg) for k in keywords if k.arg is not None}
    complete = all(k.arg is not None for k in keywords)
    if isinstance(params, ast.Dict):
        named |= {k.value for k in params.keys if isinstance(k, ast.Constant)}
        complete = complete and all(isinstance(k, ast.Constant) for k in params.keys)   # None key: **x
    elif params is not None:
        complete = False    # a variable, built elsewhere
    return named, complete


def _all_sent() -> list:
    return [entry for path in SENDERS for entry in _sent_ops(path)]


def test_the_walk_finds_the_console_and_winpop_calls():
    names = {op for _rel, _line, ops, _p, _k in _all_sent() if isinstance(ops, list) for op in ops}
    # A sample from each kind of call site: gui.ops, views, models, the wizard, ipc_client, winpop.
    assert {"domain.add", "mailbox.list", "ban.list", "tls.generate", "events.subscribe", "auth.login",
            "mailbox.migrate", "import.windows", "domain.lock", "mailbox.unlock"} <= names


def test_every_op_the_console_and_winpop_send_is_in_the_table_with_its_parameters():
    problems = []
    for rel, line, ops, params, keywords in _all_sent():
        where = f"{rel}:{line}"
        if isinstance(ops, str):
            if (rel, ops) not in PASSED_ON:
                problems.append(f"{where}: the op is {ops}, not a name from the op table")
            continue
        for op in ops:
            spec = OPS.get(op)
            if spec is None:
                problems.append(f"{where}: '{op}' is not in the op table")
                continue
            named, complete = _named_params(params, keywords)
            unknown = named - set(spec.params)
            if unknown:
                problems.append(f"{where}: '{op}' has no parameter {', '.join(sorted(unknown))}")
            if complete:
                missing = {n for n, p in spec.params.items() if p.required} - named
                if missing:
                    problems.append(f"{where}: '{op}' needs {', '.join(sorted(missing))}")
    assert not problems, "\n".join(problems)


def test_the_service_has_exactly_one_handler_per_op():
    HANDLERS.check_complete()
    assert set(HANDLERS) == set(OPS)


def test_a_handler_for_an_op_not_in_the_table_or_a_second_one_is_refused():
    table = HandlerTable()

    async def handler(ctx, params):   # never run
        return None

    with pytest.raises(RuntimeError, match="not in the op table"):
        table.register("domain.explode", handler)
    table.register("domain.add", handler)
    with pytest.raises(RuntimeError, match="second handler for 'domain.add'"):
        table.register("domain.add", handler)
    with pytest.raises(RuntimeError, match="no handler for: .*domain.delete"):
        table.check_complete()


def test_check_implemented_names_what_is_missing_unknown_and_doubled():
    names = [*OPS, "domain.explode", "stat"]
    names.remove("queue.show")
    with pytest.raises(RuntimeError) as failed:
        check_implemented(names, "This thing")
    assert str(failed.value) == ("This thing and the op table (core/ipc/ops.py) disagree: no handler for: "
                                 "queue.show; not in the op table: domain.explode; more than one handler for: stat.")


def test_every_op_says_what_it_does_returns_and_publishes():
    for name, spec in OPS.items():
        assert spec.summary and spec.returns, name
        assert set(spec.publishes) <= set(EVENTS), name
        if not spec.mutates:
            assert not spec.publishes, f"{name} changes nothing, so it publishes nothing"


def test_only_the_token_logon_may_come_before_admission():
    # service/ipc/tcp.py's gate answers exactly this op on a connection not yet admitted.
    assert [name for name, spec in OPS.items() if spec.access is Access.LOGON] == ["auth.login"]
    assert "auth.login" in (ROOT / "service" / "ipc" / "tcp.py").read_text()
