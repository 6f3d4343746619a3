"""winpop takes every documented form of the original's winpop.exe (issue 15) against a real
service: slash options before or after a positional password, verbs in any case, migrateToAD,
createquotafile, the retired socket and thread settings; its exit codes; `get` describing every
setting; `status` showing the certificate fingerprint; Ctrl-D and Ctrl-C at a password prompt."""
from __future__ import annotations

import os
import poplib
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from core.catalog import SETTINGS
from service.winpop import HELP, RETIRED_SETTINGS, _queued_text
from tests.support import ROOT, free_port, unverified_tls, wait_for

DOMAIN = "example.com"


def logs_on(service, address: str, password: str) -> bool:
    """Whether a POP3 client (STLS, then USER/PASS) gets in with this password."""
    pop = poplib.POP3("127.0.0.1", service.ports["pop3"], timeout=10)
    try:
        pop.stls(unverified_tls())
        pop.user(address)
        pop.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        pop.close()


def ok(service, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    result = service.winpop(*args, input=input)
    assert result.returncode == 0, f"winpop {' '.join(args)} -> {result.returncode}: {result.stderr}"
    return result


def test_the_original_forms_of_add_changepwd_and_delete(service):
    ok(service, "ADD", DOMAIN)
    spaced = ok(service, "add", f"alice@{DOMAIN}", "/createuser", "Pw-alice-1")   # TechNet's form
    assert "visible to other users" in spaced.stderr
    ok(service, "Add", f"bob@{DOMAIN}", "/CreateUser:Pw-bob-1")                  # the Chinese copy's form
    ok(service, "add", f"carol@{DOMAIN}", "Pw-carol-1", "/createuser")            # password first
    ok(service, "add", f"dave@{DOMAIN}", "Pw-dave-1")                             # no /createuser at all
    assert {m["name"] for m in service.call("mailbox.list", domain=DOMAIN)["items"]} == {"alice", "bob", "carol",
                                                                                         "dave"}
    for name in ("alice", "bob", "carol", "dave"):
        assert logs_on(service, f"{name}@{DOMAIN}", f"Pw-{name}-1"), name

    ok(service, "CHANGEPWD", f"alice@{DOMAIN}", "New-alice-2")
    assert logs_on(service, f"alice@{DOMAIN}", "New-alice-2")
    assert not logs_on(service, f"alice@{DOMAIN}", "Pw-alice-1")

    ok(service, "delete", f"bob@{DOMAIN}", "/deleteuser")
    ok(service, "DELETE", f"carol@{DOMAIN}", "/DELETEUSER")
    ok(service, "delete", f"dave@{DOMAIN}")
    assert [m["name"] for m in service.call("mailbox.list", domain=DOMAIN)["items"]] == ["alice"]
    ok(service, "Delete", DOMAIN, "/deleteuser")
    assert service.call("domain.list")["total"] == 0


def test_verbs_are_case_insensitive_and_migratetoad_is_migrate(service):
    ok(service, "add", DOMAIN)
    ok(service, "add", f"alice@{DOMAIN}", "--password-stdin", input="Pw-alice-1\n")
    assert "alice" in ok(service, "LIST", DOMAIN).stdout
    assert DOMAIN in ok(service, "List").stdout
    assert "1 domains, 1 mailboxes" in ok(service, "STAT").stdout
    assert f"Domain {DOMAIN}: 1 mailboxes" in ok(service, "Stat", DOMAIN).stdout
    ok(service, "LOCK", f"alice@{DOMAIN}")
    assert service.call("mailbox.get", address=f"alice@{DOMAIN}")["locked"] is True
    ok(service, "UnLock", f"alice@{DOMAIN}")
    ok(service, "Lock", DOMAIN)
    assert service.call("domain.get", name=DOMAIN)["locked"] is True
    ok(service, "UNLOCK", DOMAIN)
    assert ok(service, "GET", "AUTH").stdout.strip() == "auth: passwordfile"
    assert "logging is now 3 (Maximum)" in ok(service, "SET", "Logging", "3").stdout
    assert "Service:" in ok(service, "Status").stdout

    # No directory is configured: the service refuses, but it was asked to migrate (the alias works).
    migrated = service.winpop("migrateToAD", f"alice@{DOMAIN}")
    assert migrated.returncode == 1, migrated.stderr
    assert "unknown verb" not in migrated.stderr
    assert service.call("audit.list", limit=1)["items"][0]["op"] == "mailbox.migrate"
    assert "migrateToAD" in ok(service, "help", "MIGRATETOAD").stdout


def test_createquotafile_maps_onto_the_built_in_quota(service):
    ok(service, "add", DOMAIN)
    ok(service, "add", f"alice@{DOMAIN}", "--password-stdin", input="Pw-alice-1\n")
    shown = ok(service, "createquotafile", f"alice@{DOMAIN}", "/user:alice")
    assert "No quota file is needed" in shown.stdout and "no quota" in shown.stdout
    assert "alice is not charged" in shown.stdout
    assert service.call("mailbox.get", address=f"alice@{DOMAIN}")["quota_bytes"] is None

    ok(service, "CreateQuotaFile", f"alice@{DOMAIN}", "--quota", "10MB")
    assert service.call("mailbox.get", address=f"alice@{DOMAIN}")["quota_bytes"] == 10 * 2**20
    assert "10.0 MB" in ok(service, "createquotafile", f"alice@{DOMAIN}").stdout
    ok(service, "createquotafile", f"alice@{DOMAIN}", "--quota", "none")
    assert service.call("mailbox.get", address=f"alice@{DOMAIN}")["quota_bytes"] is None


RETIRED = [
    pytest.param(("set", "socket", "64", "50", "10", "5"), "max_connections", id="socket-combined"),
    pytest.param(("set", "SocketBacklog", "10"), "refused politely", id="socketbacklog"),
    pytest.param(("set", "socketmax", "50"), "max_connections", id="socketmax"),
    pytest.param(("set", "socketmin", "10"), "no sockets are made in advance", id="socketmin"),
    pytest.param(("set", "socketthreshold", "5"), "no sockets are made in advance", id="socketthreshold"),
    pytest.param(("set", "threadcount", "8"), "event loop", id="threadcount"),
    pytest.param(("get", "socketmax"), "max_connections", id="get-socketmax"),
    pytest.param(("get", "THREADCOUNT"), "event loop", id="get-threadcount"),
]


def test_retired_socket_and_thread_settings_are_accepted_and_change_nothing(service):
    before = service.call("settings.get")
    for param in RETIRED:
        args, replaced_by = param.values
        result = ok(service, *args)
        assert "not used by this service" in result.stdout and replaced_by in result.stdout, param.id
        if args[0] == "set":
            assert "nothing was changed" in result.stdout, param.id
    assert service.call("settings.get") == before
    assert set(RETIRED_SETTINGS) == {"socket", "socketbacklog", "socketmax", "socketmin", "socketthreshold",
                                     "threadcount"}


USAGE, REFUSED, UNREACHABLE = 2, 1, 3
EXIT_CODES = [
    pytest.param(("frobnicate",), USAGE, "unknown verb", id="unknown-verb"),
    pytest.param(("add",), USAGE, "winpop add", id="missing-target"),
    pytest.param(("add", f"x@{DOMAIN}", "pw", "extra"), USAGE, "winpop add", id="extra-word"),
    pytest.param(("add", "other.example", "Password"), USAGE, "a domain takes no password", id="domain-password"),
    pytest.param(("set", "logging"), USAGE, "winpop set", id="set-without-value"),
    pytest.param(("--no-such-option", "list"), USAGE, "unrecognized", id="unknown-option"),
    pytest.param(("add", DOMAIN), REFUSED, "already exists", id="duplicate-domain"),
    pytest.param(("set", "logging", "7"), REFUSED, "from 0 to 3", id="bad-value"),
    pytest.param(("get", "nonsense"), REFUSED, "no setting", id="unknown-setting"),
    pytest.param(("changepwd", f"nobody@{DOMAIN}", "Pw-1-nobody"), REFUSED, "", id="no-such-mailbox"),
    pytest.param(("queue", "show", "abc"), REFUSED, "not a queue id", id="queue-id-not-a-number"),
    pytest.param(("queue", "show", "999"), REFUSED, "no queued message", id="queue-id-unknown"),
    pytest.param(("set", "socketmax", "many"), REFUSED, "a number", id="retired-not-a-number"),
    pytest.param(("add", f"eve@{DOMAIN}"), REFUSED, "--password-stdin", id="no-password-no-terminal"),
    pytest.param(("--host", "127.0.0.1:notaport", "list"), REFUSED, "HOST[:PORT]", id="bad-host"),
]


def test_exit_codes(service, tmp_path):
    ok(service, "add", DOMAIN)
    for param in EXIT_CODES:
        args, code, words = param.values
        env_args = ("--token-stdin",) if "--host" in args else ()
        result = service.winpop(*env_args, *args, input="p3t_x\n" if env_args else "")
        assert result.returncode == code, f"{param.id}: {result.returncode} {result.stderr}"
        assert words in result.stderr, f"{param.id}: {result.stderr}"
        assert "Traceback" not in result.stderr, param.id
    assert service.call("mailbox.list", domain=DOMAIN)["total"] == 0

    no_service = subprocess.run([sys.executable, "-m", "service.winpop", "--data-dir", str(tmp_path), "LIST"],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert no_service.returncode == UNREACHABLE and "not running" in no_service.stderr
    closed = subprocess.run([sys.executable, "-m", "service.winpop", "--host", f"127.0.0.1:{free_port()}",
                             "--token-stdin", "list"], cwd=ROOT, input="p3t_x\n", capture_output=True, text=True,
                            timeout=60)
    assert closed.returncode == UNREACHABLE and "not reachable" in closed.stderr


def test_help_lists_every_verb(service):
    for args in (("--help",), ("-h",), ("/?",), ("help",), ("HELP",), ()):
        result = service.winpop(*args)
        assert result.returncode == 0, args
        for verb in HELP:
            assert f"winpop {verb}" in result.stdout, (args, verb)
        assert "Exit status" in result.stdout
    assert ok(service, "ADD", "--help").stdout.startswith("winpop add")
    assert ok(service, "changepwd", "/?").stdout.startswith("winpop changepwd")


def test_get_describes_every_setting_and_booleans_print_alike(service):
    listing = ok(service, "get").stdout
    for name, spec in SETTINGS.items():
        assert spec.label in listing, name
        if spec.help:
            assert spec.help in listing, name
    assert ok(service, "set", "sparequired", "no").stdout.strip() == "sparequired is now 0."
    assert ok(service, "get", "sparequired").stdout.strip() == "sparequired: 0"
    assert ok(service, "set", "SpaRequired", "yes").stdout.strip() == "sparequired is now 1."
    assert ok(service, "get", "sparequired").stdout.strip() == "sparequired: 1"
    row = next(line for line in listing.splitlines() if line.startswith("sparequired "))
    assert row.split()[1] == "1"


def test_status_prints_the_fingerprint_the_trust_error_points_to(service):
    port = free_port()
    service.call("settings.set", name="admin_tcp_bind", value="127.0.0.1")
    service.call("settings.set", name="admin_tcp_port", value=port)
    wait_for(lambda: service.call("server.info")["admin_tcp"]["state"] == "running", 10, what="the TCP listener")
    fingerprint = service.call("server.info")["tls"]["fingerprint"]
    status = ok(service, "status").stdout
    assert f"Certificate SHA-256 fingerprint: {fingerprint}" in status
    assert f"Remote administration: running on 127.0.0.1:{port}" in status

    token = service.call("admin.token_create", name="forms")["token"]
    untrusted = subprocess.run([sys.executable, "-m", "service.winpop", "--host", f"127.0.0.1:{port}",
                                "--token-stdin", "list"], cwd=ROOT, input=token + "\n", capture_output=True,
                               text=True, timeout=60)
    assert untrusted.returncode == REFUSED, untrusted.stderr      # reached, but not trusted: not a 3
    assert fingerprint in untrusted.stderr and "'winpop status'" in untrusted.stderr
    pinned = subprocess.run([sys.executable, "-m", "service.winpop", "--host", f"127.0.0.1:{port}",
                             "--fingerprint", fingerprint, "--token-stdin", "list"], cwd=ROOT, input=token + "\n",
                            capture_output=True, text=True, timeout=60)
    assert pinned.returncode == 0, pinned.stderr


def _at_the_prompt(service, address: str) -> tuple[subprocess.Popen, int]:
    """winpop add ADDRESS with a terminal as stdin, once it shows its password prompt."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "service.winpop", "--data-dir", str(service.data_dir), "add",
                             address], cwd=ROOT, stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    assert proc.stderr is not None
    while b"Password: " not in seen:
        assert time.monotonic() < deadline, f"no prompt: {seen!r}"
        ready, _, _ = select.select([proc.stderr], [], [], 1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 1024)
            assert chunk, f"winpop ended before its prompt: {seen!r}"
            seen += chunk
    return proc, controller


@pytest.mark.parametrize("how", ["ctrl-d", "ctrl-c"])
def test_ctrl_d_and_ctrl_c_at_the_password_prompt_end_quietly(service, how):
    service.call("domain.add", name=DOMAIN)
    proc, controller = _at_the_prompt(service, f"alice@{DOMAIN}")
    try:
        if how == "ctrl-d":
            os.write(controller, b"\x04")        # end of input on an empty line
        else:
            proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        os.close(controller)
    assert proc.returncode == REFUSED
    text = err.decode()
    assert "Traceback" not in text and "cancelled at the password prompt; nothing was changed" in text
    assert service.call("mailbox.list", domain=DOMAIN)["total"] == 0


def test_queue_show_prints_text():
    item = {"id": 7, "queue_id": "q7", "size": 2048, "sender": "alice@example.com", "submitted_by": "alice",
            "client": "192.0.2.1", "created_at": "2024-05-01T10:00:00+00:00",
            "recipient_states": [{"address": "bob@far.example", "status": "pending", "attempts": 2,
                                  "next_attempt": "2024-05-01T11:00:00+00:00", "last_error": "451 try later",
                                  "in_progress": False}],
            "headers": "Subject: hello\r\nFrom: alice@example.com", "body_preview": "Hi Bob", "body_truncated": True}
    text = _queued_text(item)
    assert text.splitlines()[0] == "Message 7 (q7), 2 KB"
    assert "bob@far.example: pending, 2 tries" in text and "last error: 451 try later" in text
    assert "Subject: hello" in text and "Hi Bob" in text and "not shown" in text
    assert not text.lstrip().startswith("{")
