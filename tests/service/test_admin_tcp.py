"""The remote administration listener against the real service: TLS, token auth, refusal of a bad
token (and the throttle behind it), the audit log, winpop --host and the token verbs."""
from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys

import pytest

from core.errors import Forbidden, Unavailable
from core.ipc.client import AdminClient
from tests.support import ROOT, ServiceProcess, database_contents, free_port, unverified_tls, wait_for


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("admin-tcp") / "data").start()
    port = free_port()
    svc.call("settings.set", name="throttle_delay_ms", value=0)     # tests need no escalating delay
    svc.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    svc.call("settings.set", name="admin_tcp_port", value=port)
    svc.tcp_port = port
    wait_for(lambda: svc.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    svc.fingerprint = svc.call("server.info")["tls"]["fingerprint"]
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def token(service) -> str:
    made = service.call("admin.token_create", name="test console")
    assert made["token"].startswith("p3t_") and len(made["token"]) > 40
    return made["token"]


def _tls_socket(port: int) -> ssl.SSLSocket:
    return unverified_tls().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))


def test_a_token_admits_and_the_connection_serves_the_op_table(service, token):
    with AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=service.fingerprint) as client:
        info = client.call("server.info")
        assert info["admin_tcp"] == {"state": "running", "address": "127.0.0.1", "port": service.tcp_port,
                                     "error": ""}
        client.call("domain.add", name="remote.example")
        assert client.call("auth.login", token="ignored")["actor"].endswith("(token test console)")
        client.call("events.subscribe")
        service.call("domain.add", name="local.example")        # another admin, over the Unix socket
        assert client.next_event()["event"] == "domain.added"
    audit = service.call("audit.list", limit=20)["items"]
    remote = [a for a in audit if a["op"] == "domain.add" and a["target"] == "remote.example"]
    assert remote and remote[0]["actor"].startswith("127.0.0.1:") and "token test console" in remote[0]["actor"]
    assert any(a["op"] == "connect" and a["outcome"] == "ok" and a["actor"].startswith("127.0.0.1:") for a in audit)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_listener_speaks_only_tls_1_2_or_newer(service):
    plain = socket.create_connection(("127.0.0.1", service.tcp_port), timeout=10)
    plain.sendall(b'{"id":1,"op":"server.info","params":{}}\n')
    assert b'"result"' not in plain.recv(4096)   # a TLS alert or nothing, never an answer
    plain.close()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, OSError)):
        context.wrap_socket(socket.create_connection(("127.0.0.1", service.tcp_port), timeout=10))


def test_a_bad_token_is_refused_audited_and_throttled(service):
    with pytest.raises(Forbidden, match="not valid"):
        AdminClient.over_tcp("127.0.0.1", service.tcp_port, "p3t_wrong", fingerprint=service.fingerprint)
    # Any request other than auth.login first: refused, the connection closed.
    with _tls_socket(service.tcp_port) as sock:
        sock.sendall(b'{"id":7,"op":"domain.list","params":{}}\n')
        answer = json.loads(sock.makefile("rb").readline())
        assert answer["id"] == 7 and answer["error"]["code"] == "forbidden"
        assert sock.recv(10) == b""
    audit = service.call("audit.list", limit=20)["items"]
    refusals = [a for a in audit if a["op"] == "connect" and a["outcome"].startswith("forbidden")]
    assert {a["outcome"] for a in refusals} >= {"forbidden: bad token", "forbidden: no login"}
    assert all(a["actor"].startswith("127.0.0.1:") for a in refusals)


def test_enough_bad_tokens_ban_the_address_until_lifted(service, token):
    service.call("settings.set", name="throttle_failures", value=3)
    # Loopback is allow-listed by default; ban it here.
    service.call("settings.set", name="throttle_allow", value="192.0.2.1")
    try:
        for _ in range(3):
            with pytest.raises(Forbidden):
                AdminClient.over_tcp("127.0.0.1", service.tcp_port, "p3t_guess", fingerprint=service.fingerprint)
        assert any(b["value"] == "127.0.0.1" for b in service.call("ban.list")["items"])
        with pytest.raises(Forbidden, match="Too many failed logons"):
            AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=service.fingerprint)
    finally:
        service.call("ban.lift", value="127.0.0.1")
        service.call("settings.set", name="throttle_failures", value=10)
        service.call("settings.set", name="throttle_allow", value="127.0.0.0/8, ::1")
    AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=service.fingerprint).close()


def test_the_certificate_must_verify_or_match_the_pinned_fingerprint(service, token):
    with pytest.raises(Unavailable, match="not trusted.*fingerprint is " + service.fingerprint[:8]):
        AdminClient.over_tcp("127.0.0.1", service.tcp_port, token)
    with pytest.raises(Unavailable, match="Someone may be in between"):
        AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint="AB" * 32)


def test_tokens_are_stored_only_as_hashes_and_revocation_takes_effect(service):
    made = service.call("admin.token_create", name="short lived")
    listed = service.call("admin.token_list")["items"]
    assert "short lived" in [t["name"] for t in listed]
    assert all("token" not in t for t in listed)
    db = database_contents(service.database_url())
    assert made["token"].encode() not in db
    AdminClient.over_tcp("127.0.0.1", service.tcp_port, made["token"], fingerprint=service.fingerprint).close()
    assert service.call("admin.token_revoke", name="short lived") == {"revoked": 1}
    with pytest.raises(Forbidden):
        AdminClient.over_tcp("127.0.0.1", service.tcp_port, made["token"], fingerprint=service.fingerprint)
    audit = service.call("audit.list", limit=30)["items"]
    created = [a for a in audit if a["op"] == "admin.token_create" and a["target"] == "short lived"]
    assert created and made["token"] not in json.dumps(audit)


def test_winpop_host_and_token_verbs(service, token):
    created = service.winpop("token", "create", "winpop test", check=True).stdout
    assert "p3t_" in created
    assert "winpop test" in service.winpop("token", "list", check=True).stdout
    env = dict(os.environ, POP3SVC_TOKEN=token)
    cmd = [sys.executable, "-m", "service.winpop", "--host", f"127.0.0.1:{service.tcp_port}",
           "--fingerprint", service.fingerprint.replace(":", "").lower(), "list"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "remote.example" in result.stdout
    env.pop("POP3SVC_TOKEN")
    stdin = subprocess.run(cmd[:-1] + ["--token-stdin", "stat"], cwd=ROOT, env=env, input=token + "\n",
                           capture_output=True, text=True, timeout=60)
    assert stdin.returncode == 0, stdin.stderr
    bad = subprocess.run(cmd, cwd=ROOT, env=dict(env, POP3SVC_TOKEN="p3t_nope"), capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and "not valid" in bad.stderr
    none = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert none.returncode == 2 and "POP3SVC_TOKEN" in none.stderr
    assert service.winpop("token", "revoke", "winpop test", check=True).returncode == 0


def test_the_listener_follows_its_settings(service, token):
    service.call("settings.set", name="admin_tcp_port", value=0)
    wait_for(lambda: service.call("server.info")["admin_tcp"]["state"] == "off", 10, what="the listener to stop")
    with pytest.raises(Unavailable, match="not reachable"):
        AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=service.fingerprint, timeout=5)
    service.call("settings.set", name="admin_tcp_port", value=service.tcp_port)
    wait_for(lambda: service.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the listener")
    AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=service.fingerprint).close()


def test_a_new_certificate_reaches_the_admin_listener_without_a_restart(service, token):
    """The listener shares the service's SSL context, which a new certificate is loaded into in place."""
    import hashlib

    from tests.service.test_tls_certificates import make_pair

    cert, key = make_pair("renewed-admin.example.com")
    try:
        service.call("tls.import", cert=cert, key=key)
        new = service.call("server.info")["tls"]["fingerprint"]
        with _tls_socket(service.tcp_port) as tls:
            served = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
        assert new.replace(":", "").lower() == served != service.fingerprint.replace(":", "").lower()
        with AdminClient.over_tcp("127.0.0.1", service.tcp_port, token, fingerprint=new) as client:
            assert client.call("server.info")["tls"]["fingerprint"] == new   # pinned to the new one: admitted
    finally:
        service.fingerprint = service.call("server.info")["tls"]["fingerprint"]
