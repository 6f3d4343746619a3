"""SMTP's parts, each with one job (issue 16): the modules' shape, and the outgoing client apart
from the queue's scheduling."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from core.auth.keystore import ServerKey
from core.errors import Unavailable
from core.sealer import Sealer
from service.smtp.delivery import Hop, MxResolver, Outcome, RemoteDelivery, Route
from service.smtp.queue import new_queue_id

ROOT = Path(__file__).resolve().parents[2]
SMTP_DIR = ROOT / "service" / "smtp"


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text()) for p in sorted(SMTP_DIR.glob("*.py"))}


@pytest.mark.parametrize("name", sorted(_modules()), ids=str)
def test_no_function_local_imports_and_no_probes(name: str) -> None:
    tree = _modules()[name]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"import in {node.name}:{inner.lineno}" for inner in ast.walk(node)
                      if isinstance(inner, (ast.Import, ast.ImportFrom))]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("hasattr", "getattr"):
            found.append(f"{node.func.id}:{node.lineno}")
    assert found == []


def test_the_smtp_modules_import_one_another_without_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for name, tree in _modules().items():
        graph[name] = {node.module.rsplit(".", 1)[1] for node in ast.walk(tree)
                       if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("service.smtp.")}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for imported in graph.get(name, ()):
                visit(imported, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_the_server_only_assembles() -> None:
    """server.py makes and wires the parts: no SMTP conversation, no SQL, no store call there."""
    tree = _modules()["server"]
    handlers = [n.name for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef) and n.name.startswith("handle_")]
    assert handlers == []
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"aiosmtpd.smtp", "sqlalchemy", "core.tables"} & imported


class Settings:
    def __init__(self, **values: Any) -> None:
        self.values = values
        self.hostname = "mx.test"

    def get(self, name: str) -> Any:
        return self.values.get(name, "")


class Wire:
    """Stands in for one SMTP transaction: each server answers every recipient with its code."""

    def __init__(self, codes: dict[str, int]) -> None:
        self.codes = codes
        self.calls: list[tuple[str, str, list[str]]] = []

    def __call__(self, hop: Hop, *, helo: str, sender: str, recipients: list[str], data: bytes) -> dict[str, Outcome]:
        self.calls.append((hop.host, helo, list(recipients)))
        code = self.codes[hop.host]
        return {r: Outcome(code, f"{code} from {hop.host}", hop.host) for r in recipients}


def test_the_client_tries_the_next_server_only_for_what_the_first_could_not_take() -> None:
    route = Route([Hop("a"), Hop("b"), Hop("c")])
    wire = Wire({"a": 0, "b": 451, "c": 250})
    outcomes = RemoteDelivery(Settings(), None, sender=wire).deliver(route, sender="s@x.test",
                                                                      recipients=["r1@y.test", "r2@y.test"], data=b"m")
    assert [call[0] for call in wire.calls] == ["a", "b", "c"] and wire.calls[0][1] == "mx.test"
    assert {r: o.code for r, o in outcomes.items()} == {"r1@y.test": 250, "r2@y.test": 250}

    wire = Wire({"a": 550, "b": 250})
    outcomes = RemoteDelivery(Settings(), None, sender=wire).deliver(Route([Hop("a"), Hop("b")]), sender="",
                                                                      recipients=["r@y.test"], data=b"m")
    assert [call[0] for call in wire.calls] == ["a"] and outcomes["r@y.test"].permanent   # the domain's answer


def test_a_route_without_servers_fails_every_recipient_with_its_error() -> None:
    wire = Wire({})
    client = RemoteDelivery(Settings(), None, sender=wire)
    gone = Route(error="The domain y.test does not exist (DNS NXDOMAIN).", permanent=True, status="5.1.2")
    outcomes = client.deliver(gone, sender="s@x.test", recipients=["r@y.test"], data=b"m")
    assert outcomes["r@y.test"] == Outcome(550, "550 5.1.2 The domain y.test does not exist (DNS NXDOMAIN).")
    later = client.deliver(Route(error="DNS timed out"), sender="s@x.test", recipients=["r@y.test"], data=b"m")
    assert later["r@y.test"].code == 451 and wire.calls == []


def test_the_resolver_follows_the_settings_and_opens_the_smart_host_password() -> None:
    sealer = Sealer(ServerKey.generate())
    settings = Settings(smarthost="relay.isp.test:587", smarthost_user="office",
                        smarthost_password=sealer.seal("smarthost_password", "s3cret"))
    resolver = RemoteDelivery(settings, sealer).resolver()
    assert isinstance(resolver, MxResolver)
    assert resolver.route("anywhere.test").hops == [Hop("relay.isp.test", 587, ("office", "s3cret"))]
    with pytest.raises(Unavailable, match="without the server key"):
        RemoteDelivery(settings, None).resolver()
    assert RemoteDelivery(Settings(smarthost="relay.isp.test"), None).resolver().smarthost_auth is None


def test_queue_ids_are_unique_and_ordered() -> None:
    ids = [new_queue_id() for _ in range(200)]
    assert len(set(ids)) == 200 and ids == sorted(ids, key=lambda i: int(i[:-12], 16))
