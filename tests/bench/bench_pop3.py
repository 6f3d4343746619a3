"""POP3 retrieval benchmark: this service against Dovecot, side by side in one run.

    python tests/bench/bench_pop3.py [--runs 3] [--work /tmp/pop3bench] [--no-dovecot]

Both servers serve the same Maildir messages on 127.0.0.1 (DESIGN §5 stores Maildir, so the
files are identical; names follow Dovecot's form with ,S= and ,W= sizes):
  * bench4k: 2,000 messages of ~4 KB (about 2% of body lines start with "." for dot-stuffing)
  * bench1m: 200 messages of ~1 MB (base64 lines of 76 columns)
  * u01…u50: 200 x 4 KB each, one mailbox per concurrent client
Clients (as in shared/reference/peer-performance.md §4.3): ``poplib`` (one RETR per round trip)
and a pipelined raw-socket client (USER/PASS/STAT/UIDL in one write, RETRs in a window of 32).
Each case runs --runs times per server, alternating; the medians are reported, with the ratio
to Dovecot. Last, 1,000 idle sessions are opened against this service and its RSS is read.

Dovecot (Debian dovecot-pop3d) is configured here: its own base_dir, a passwd-file, a static
userdb running mail processes as "nobody", ssl = no, plaintext auth allowed. Needs root.
"""
from __future__ import annotations

import argparse
import base64
import multiprocessing
import os
import poplib
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import ServiceProcess, free_port, wait_for  # noqa: E402

PASSWORD = "bench-pw-1"   # the password rule (core/passwords.py): 8 characters at least
DOMAIN = "bench.test"
WINDOW = 32
CONCURRENT = 50


# -- data sets --------------------------------------------------------------------------------
def text_message(rng: random.Random, n: int, size: int = 4050) -> bytes:
    head = (f"From: sender{n}@example.org\nTo: bench@{DOMAIN}\nSubject: benchmark message {n}\n"
            f"Message-ID: <{n}.{rng.random()}@example.org>\nDate: Fri, 27 Nov 2026 10:00:00 +0000\n\n")
    lines = [head]
    total = len(head)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do"]
    while total < size + rng.randint(-25, 50):
        line = " ".join(rng.choice(words) for _ in range(rng.randint(6, 12)))
        if rng.random() < 0.02:
            line = "." + line
        lines.append(line + "\n")
        total += len(line) + 1
    return "".join(lines).encode()


def mime_message(rng: random.Random, n: int, size: int = 1_048_546) -> bytes:
    head = (f"From: sender{n}@example.org\nTo: bench@{DOMAIN}\nSubject: attachment {n}\nMIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nsee attached\n"
            "--XX\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n")
    raw = base64.encodebytes(rng.randbytes(size * 3 // 4))
    body = raw[: size - len(head) - 8].rpartition(b"\n")[0] + b"\n"
    return head.encode() + body + b"--XX--\n"


def maildir_name(n: int, data: bytes) -> str:
    vsize = len(data) + data.count(b"\n") - data.count(b"\r\n")
    return f"{1790000000 + n}.M{n}P1Q{n}.bench,S={len(data)},W={vsize}:2,"


def datasets() -> dict[str, list[bytes]]:
    rng = random.Random(1939)
    sets = {"bench4k": [text_message(rng, i) for i in range(2000)],
            "bench1m": [mime_message(rng, i) for i in range(200)]}
    for u in range(1, CONCURRENT + 1):
        sets[f"u{u:02d}"] = [text_message(rng, 10_000 * u + i) for i in range(200)]
    return sets


def write_maildir(folder: Path, messages: list[bytes], sub: str) -> None:
    for d in ("tmp", "new", "cur"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(messages):
        name = maildir_name(n, data)
        if sub == "new":
            name = name.rsplit(":", 1)[0]
        (folder / sub / name).write_bytes(data)


# -- the two servers --------------------------------------------------------------------------
def start_ours(work: Path, sets: dict[str, list[bytes]]) -> ServiceProcess:
    data_dir = work / "ours"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    proc = ServiceProcess(data_dir)
    proc.start()
    for name, value in (("sparequired", 0), ("max_connections", 5000), ("max_connections_per_ip", 5000)):
        proc.call("settings.set", name=name, value=value)
    proc.call("domain.add", name=DOMAIN)
    for user in sets:
        proc.call("mailbox.add", address=f"{user}@{DOMAIN}", password=PASSWORD)
    proc.stop()
    mailroot = _mailroot(data_dir)
    for user, messages in sets.items():
        write_maildir(mailroot / DOMAIN / user, messages, "new")
    proc.start(timeout=300)        # the start-up reconcile indexes the files
    return proc


def _mailroot(data_dir: Path) -> Path:
    from core.db import Database, sqlite_url
    from core.settings import Settings
    db = Database(sqlite_url(data_dir / "pop3svc.db"))
    with db.read() as session:
        root = Settings.get(session, "mailroot")
    db.dispose()
    return Path(root)


DOVECOT_CONF = """\
protocols = pop3
listen = 127.0.0.1
base_dir = {work}/dovecot/run
state_dir = {work}/dovecot/state
instance_name = benchdovecot
log_path = {work}/dovecot/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{work}/dmail/%u/Maildir
first_valid_uid = 1000
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {work}/dovecot/users
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={work}/dmail/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service pop3 {{
  process_limit = 1024
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot:
    def __init__(self, work: Path, sets: dict[str, list[bytes]]) -> None:
        self.work = work
        base = work / "dovecot"
        if base.exists():
            shutil.rmtree(base)
        if (work / "dmail").exists():
            shutil.rmtree(work / "dmail")
        for d in ("run", "state"):
            (base / d).mkdir(parents=True)
        (base / "users").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in sets))
        for user, messages in sets.items():
            write_maildir(work / "dmail" / user / "Maildir", messages, "cur")
        subprocess.run(["chown", "-R", "65534:65534", str(work / "dmail")], check=True)
        os.chmod(work, 0o755)
        self.port = free_port()
        (base / "dovecot.conf").write_text(DOVECOT_CONF.format(work=work, port=self.port))
        self.proc = subprocess.Popen(["dovecot", "-c", str(base / "dovecot.conf"), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited: " + (base / "dovecot.log").read_text(errors="replace")[-2000:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, 30, what="dovecot")

    def stop(self) -> None:
        subprocess.run(["doveadm", "-c", str(self.work / "dovecot" / "dovecot.conf"), "stop"],
                       capture_output=True, timeout=30)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- clients ----------------------------------------------------------------------------------
def poplib_client(port: int, user: str) -> tuple[int, int]:
    """stdlib poplib, lock-step: USER/PASS, STAT, UIDL, RETR every message, QUIT."""
    client = poplib.POP3("127.0.0.1", port, timeout=120)
    client.user(user)
    client.pass_(PASSWORD)
    count, _ = client.stat()
    client.uidl()
    octets = 0
    for i in range(1, count + 1):
        _, _, size = client.retr(i)
        octets += size
    client.quit()
    return count, octets


def pipelined_client(port: int, user: str) -> tuple[int, int]:
    """Raw socket: USER/PASS/STAT/UIDL in one write, RETRs with WINDOW in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    pos = 0

    def fill() -> None:
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed")
        buf.extend(data)

    def line() -> bytes:
        nonlocal pos
        while True:
            end = buf.find(b"\r\n", pos)
            if end >= 0:
                text = bytes(buf[pos:end])
                pos = end + 2
                return text
            fill()

    def multi() -> int:
        nonlocal pos
        status = line()
        if not status.startswith(b"+OK"):
            raise RuntimeError(status)
        start = pos - 2
        while True:
            end = buf.find(b"\r\n.\r\n", start)
            if end >= 0:
                size = end + 2 - pos
                pos = end + 5
                return size
            start = max(pos - 2, len(buf) - 4)
            fill()

    line()
    sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL\r\n".encode())
    line()
    if not line().startswith(b"+OK"):
        raise RuntimeError("logon failed")
    count = int(line().split()[1])
    multi()
    octets = 0
    sent = 0
    done = 0
    while done < count:
        if sent < count and sent - done < WINDOW:
            batch = min(count, done + WINDOW) - sent
            sock.sendall(b"".join(b"RETR %d\r\n" % (sent + i + 1) for i in range(batch)))
            sent += batch
        octets += multi()
        done += 1
        if pos > 1 << 22:
            del buf[:pos]
            pos = 0
    sock.sendall(b"QUIT\r\n")
    line()
    sock.close()
    return count, octets


CLIENTS = {"poplib": poplib_client, "pipelined": pipelined_client}


def _worker(args: tuple[str, int, str, object]) -> tuple[int, int]:
    client, port, user, start = args
    start.wait()  # type: ignore[attr-defined]
    return CLIENTS[client](port, user)


def run_case(port: int, users: list[str], client: str) -> tuple[float, int, int]:
    """(seconds, messages, octets) for one run: one client per user, all at once."""
    if len(users) == 1:
        t0 = time.perf_counter()
        count, octets = CLIENTS[client](port, users[0])
        return time.perf_counter() - t0, count, octets
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager:
        start = manager.Event()
        with ctx.Pool(len(users)) as pool:
            pending = pool.map_async(_worker, [(client, port, u, start) for u in users])
            time.sleep(0.5)   # let the workers reach the start line (not synchronisation of results)
            t0 = time.perf_counter()
            start.set()
            results = pending.get(600)
            elapsed = time.perf_counter() - t0
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


# -- idle sessions ----------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def idle_sessions(proc: ServiceProcess, users: list[str], total: int = 1000) -> dict[str, float]:
    port = proc.ports["pop3"]
    before = rss_mb(proc.proc.pid)
    socks = []
    try:
        for _ in range(total):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            socks.append(s)
        for s in socks:
            if not s.recv(512).startswith(b"+OK"):
                raise RuntimeError("an idle session was refused")
        for s, user in zip(socks, users, strict=False):   # some of them logged on, with their maildrop loaded
            s.sendall(f"USER {user}@{DOMAIN}\r\nPASS {PASSWORD}\r\n".encode())
            got = b""
            while got.count(b"\r\n") < 2:
                got += s.recv(512)
            if b"-ERR" in got:
                raise RuntimeError(got)
        sessions = wait_for(lambda: _sessions(proc) >= total and _sessions(proc), 30, what="sessions")
        after = rss_mb(proc.proc.pid)
    finally:
        for s in socks:
            s.close()
    return {"sessions": sessions, "rss_before_mb": before, "rss_after_mb": after,
            "logged_on": min(len(users), total)}


def _sessions(proc: ServiceProcess) -> int:
    status = proc.call("service.status")
    return sum(lst["sessions"] for lst in status["listeners"] if lst["name"] == "pop3")


# -- main -------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/pop3bench"))
    parser.add_argument("--no-dovecot", action="store_true")
    parser.add_argument("--cases", default="4k,1m,c50", help="comma-separated: 4k, 1m, c50")
    parser.add_argument("--clients", default="poplib,pipelined")
    parser.add_argument("--no-idle", action="store_true")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    args.work.mkdir(parents=True, exist_ok=True)
    print("making the data sets ...", flush=True)
    sets = datasets()
    ours = start_ours(args.work, sets)
    dovecot = None if args.no_dovecot else Dovecot(args.work, sets)
    servers = {"ours": (ours.ports["pop3"], lambda u: f"{u}@{DOMAIN}")}
    if dovecot is not None:
        servers["dovecot"] = (dovecot.port, lambda u: u)
    cases = {"4k": ["bench4k"], "1m": ["bench1m"], "c50": [f"u{u:02d}" for u in range(1, CONCURRENT + 1)]}
    labels = {"4k": "1 client, 2,000 x 4 KB", "1m": "1 client, 200 x 1 MB", "c50": "50 clients x 200 x 4 KB"}
    results: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    try:
        for port, login in servers.values():   # warm-up: page cache, Dovecot's index
            for users in cases.values():
                for u in users:
                    pipelined_client(port, login(u))
        for case in args.cases.split(","):
            for client in args.clients.split(","):
                for run in range(args.runs):
                    for name, (port, login) in servers.items():
                        seconds, count, octets = run_case(port, [login(u) for u in cases[case]], client)
                        results.setdefault((case, client, name), []).append((count / seconds, octets / seconds / 1e6))
                        print(f"  {case:4} {client:9} {name:8} run {run + 1}: {count / seconds:9.0f} msgs/s "
                              f"{octets / seconds / 1e6:7.1f} MB/s", flush=True)
        idle = None if args.no_idle else idle_sessions(ours, [f"u{u:02d}" for u in range(1, CONCURRENT + 1)])
    finally:
        ours.stop()
        if dovecot is not None:
            dovecot.stop()
    print()
    print("| Case | Client | This service msgs/s | MB/s | Dovecot msgs/s | MB/s | Ratio (msgs/s, MB/s) |")
    print("|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        for client in args.clients.split(","):
            mine = results[(case, client, "ours")]
            m_msgs, m_mb = statistics.median(r[0] for r in mine), statistics.median(r[1] for r in mine)
            if dovecot is not None:
                theirs = results[(case, client, "dovecot")]
                d_msgs, d_mb = statistics.median(r[0] for r in theirs), statistics.median(r[1] for r in theirs)
                ratio = f"{m_msgs / d_msgs:.2f}, {m_mb / d_mb:.2f}"
                print(f"| {labels[case]} | {client} | {m_msgs:,.0f} | {m_mb:.1f} | {d_msgs:,.0f} | {d_mb:.1f} "
                      f"| {ratio} |")
            else:
                print(f"| {labels[case]} | {client} | {m_msgs:,.0f} | {m_mb:.1f} | – | – | – |")
    if idle is not None:
        print()
        print(f"Idle sessions: {idle['sessions']} open ({idle['logged_on']} logged on), service RSS "
              f"{idle['rss_before_mb']:.0f} MB before, {idle['rss_after_mb']:.0f} MB with them open.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
