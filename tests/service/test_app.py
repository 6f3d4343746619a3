"""The composition root (service/app.py): build makes every part with explicit arguments and
wires them once; a Runtime starts and stops them; several Runtimes live side by side in one
process (no globals); the service's parts are never handed a bag of everything."""
from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import json
import typing
from pathlib import Path

import pytest

from service.app import Process, Runtime, ServiceConfig, StartupError, build
from service.ipc.scope import AdminScope
from service.listeners import ConnectionBudget
from tests.support import db_url_for, free_port

ROOT = Path(__file__).resolve().parents[2]
# The modules of the composition and the parts it wires (issue 16).
COMPOSED = ("service/app.py", "service/daemon.py", "service/workers.py", "service/live_settings.py",
            "service/counters.py", "service/event_bus.py", "service/status.py", "service/control.py",
            "service/change_events.py", "service/auth_methods.py", "service/cluster.py", "service/tls.py",
            "service/throttle.py", "service/listeners.py", "service/pop3/server.py", "service/pop3/session.py",
            "service/pop3/commands.py", "service/pop3/state.py", "service/smtp/server.py",
            "service/smtp/queue.py", "service/ipc/server.py", "service/ipc/tcp.py", "service/ipc/scope.py",
            "service/ipc/audit.py", "service/ipc/handlers.py")


def _process(loop: asyncio.AbstractEventLoop, shutdowns: list[bool] | None = None) -> Process:
    return Process(loop=loop, budget=ConnectionBudget(100), set_log_level=lambda _level: None,
                   request_shutdown=(shutdowns if shutdowns is not None else []).append)


def _config(data_dir: Path, **ports: int) -> ServiceConfig:
    chosen = {"pop3": 0, "pop3s": 0, "smtp": 0, "submission": 0, "smtps": 0, **ports}
    return ServiceConfig(data_dir=data_dir, db_url=db_url_for(data_dir / "pop3svc.db"), bind="127.0.0.1",
                         ports=chosen)


async def _start(runtime: Runtime) -> None:
    await asyncio.get_running_loop().run_in_executor(None, runtime.prepare)
    await runtime.open_admin()
    runtime.bind()
    await runtime.serve()


async def _greeting(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def _admin_call(path: Path, op: str) -> dict:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(json.dumps({"id": 1, "op": op, "params": {}}).encode() + b"\n")
        return json.loads(await asyncio.wait_for(reader.readline(), 10))
    finally:
        writer.close()


def test_two_runtimes_in_one_process_serve_and_stop_independently(tmp_path: Path) -> None:
    """Nothing global: two services built in one process (as worker processes will be, later)
    each answer on their own ports and admin socket, and stop without touching the other."""
    ports = [free_port(), free_port()]

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        runtimes = []
        for n, port in enumerate(ports):
            config = _config(tmp_path / f"node{n}", pop3=port)
            config.data_dir.mkdir()
            runtimes.append(await loop.run_in_executor(None, build, config, _process(loop)))
        for runtime in runtimes:
            await _start(runtime)
        assert runtimes[0].settings is not runtimes[1].settings
        for runtime, port in zip(runtimes, ports, strict=True):
            assert list(runtime.listeners) == ["pop3"]   # port 0 disables the others
            assert (await _greeting(port)).startswith(b"+OK ")
            status = await _admin_call(runtime.admin_server.path, "service.status")
            assert [entry["port"] for entry in status["result"]["listeners"]] == [port]
        await runtimes[0].stop()
        assert not runtimes[0].admin_server.path.exists()
        assert (await _greeting(ports[1])).startswith(b"+OK ")   # the other still serves
        await runtimes[1].stop()

    asyncio.run(scenario())


def test_a_changed_host_name_reaches_greetings_and_tls_without_a_restart(tmp_path: Path) -> None:
    port = free_port()

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        config = _config(tmp_path, pop3=port)
        runtime = await loop.run_in_executor(None, build, config, _process(loop))
        await _start(runtime)
        try:
            scope = runtime.admin_server.scope
            await scope.run(scope.admin.settings_set, "hostname", "mail.renamed.test")
            await scope.run(scope.reload_settings)
            await scope.run(scope.apply_settings)
            assert (await _greeting(port)).startswith(b"+OK mail.renamed.test POP3 Service ready")
            assert runtime.tls.hostname == "mail.renamed.test"
            assert runtime.smtp.hostname == "mail.renamed.test"
        finally:
            await runtime.stop()

    asyncio.run(scenario())


def test_build_wires_one_of_each_shared_part(tmp_path: Path) -> None:
    async def scenario() -> Runtime:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, build, _config(tmp_path, pop3=free_port(), smtp=free_port()),
                                          _process(loop))

    runtime = asyncio.run(scenario())
    try:
        scope: AdminScope = runtime.admin_server.scope
        pop3, smtp = runtime.pop3, runtime.smtp
        assert pop3.settings is smtp.settings is scope.settings is runtime.settings
        assert pop3.workers is smtp.workers is scope.workers is runtime.workers
        assert pop3.counters is smtp.counters is scope.stats
        assert pop3.throttle is smtp.throttle is scope.throttle
        assert pop3.tls is smtp.tls is scope.tls is runtime.tls
        assert pop3.auth is smtp.auth is scope.auth_methods is runtime.auth
        assert scope.admin.auth is runtime.auth.provider
        assert smtp.listeners is scope.listeners is runtime.listeners
        assert all(listener.bound_port is None for listener in runtime.listeners.values())   # nothing bound yet
    finally:
        runtime.workers.shutdown()
        runtime.db.dispose()


def test_a_database_that_cannot_be_opened_is_a_startup_error(tmp_path: Path) -> None:
    config = ServiceConfig(data_dir=tmp_path, db_password_file=tmp_path / "pw")
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(StartupError, match="--db-password-file needs --db-url"):
            build(config, _process(loop))
    finally:
        loop.close()


def test_every_admin_scope_member_is_typed_and_set_at_construction() -> None:
    hints = typing.get_type_hints(AdminScope)
    for member in dataclasses.fields(AdminScope):
        assert member.default is dataclasses.MISSING, member.name
        assert hints[member.name] is not typing.Any, member.name
    assert AdminScope.__dataclass_params__.frozen   # type: ignore[attr-defined]


@pytest.mark.parametrize("path", COMPOSED, ids=lambda p: p.removeprefix("service/"))
def test_composed_modules_import_nothing_inside_functions_and_probe_no_part(path: str) -> None:
    """Function-local imports hide import cycles; hasattr/getattr on a part hides what it is."""
    tree = ast.parse((ROOT / path).read_text())
    local_imports, probes = [], []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local_imports += [f"{node.name}:{inner.lineno}" for inner in ast.walk(node)
                              if isinstance(inner, (ast.Import, ast.ImportFrom))]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Attribute) or (isinstance(first, ast.Name) and first.id in ("ctx", "self")):
                probes.append(f"{node.func.id}:{node.lineno}")
    assert local_imports == []
    # Two remain on purpose: the op table's admin methods (service/ipc/handlers.py, the dispatch)
    # and LogFile's own flag; neither probes a service part.
    allowed = {"service/ipc/handlers.py": 1, "service/daemon.py": 2}
    assert len(probes) <= allowed.get(path, 0), probes


def test_no_part_takes_a_context_bag() -> None:
    """Constructors name what they need: no parameter called ctx or context anywhere in service/."""
    offenders = []
    for path in sorted((ROOT / "service").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "__init__":
                names = [a.arg for a in node.args.args + node.args.kwonlyargs]
                if {"ctx", "context"} & set(names):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
    assert not (ROOT / "service" / "context.py").exists()
    assert "ctx" not in inspect.signature(build).parameters
