"""SMTP ingestion benchmark: this service against (a) a bare aiosmtpd handler writing a Maildir
with fsync (the floor of this stack) and (b) Debian's Postfix delivering to a Maildir, on loopback.

    python tests/bench/bench_smtp.py [--msgs 2000] [--rounds 3] [--conns 1 20] [--no-postfix] [--logging 2]

Each round runs every server once per connection count, alternating (A B C A B C ...), so they
share the machine's noise; the report gives medians and the median of the paired ratios.
"Durable": our 250 comes after the file is fsynced, linked into new/, the folder fsynced and the
index committed; variant (a-file) fsyncs the file only, (a-dir) the file and new/ (the strict
equivalent of ours). Postfix's 250 means "in its queue, fsynced"; its delivered rate is the
Maildir rate. Every server is started here, bounded by a deadline, and stopped by its pid.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WORK = Path("/tmp/bench-smtp")
MSG_LINES = 55


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_messages(n: int, rcpt: str) -> list[bytes]:
    """~4,050-byte messages, CRLF, already dot-stuffed (no line starts with '.')."""
    out = []
    for i in range(n):
        head = (f"From: <bench@client.test>\r\nTo: <{rcpt}>\r\nSubject: message {i}\r\n"
                f"Message-ID: <{i}.{time.time_ns()}@client.test>\r\n\r\n")
        body = "".join(f"{i:06d} {j:02d} " + "x" * 60 + "\r\n" for j in range(MSG_LINES))
        out.append((head + body).encode())
    return out


# -- the client (peer-performance.md §5.3: lock step, no pipelining) ------------------------------
async def _reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return int(line[:3])


async def _conn(port: int, rcpt: str, messages: list[bytes], latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert await _reply(reader) == 220
    writer.write(b"EHLO client.test\r\n")
    assert await _reply(reader) == 250
    for data in messages:
        start = time.perf_counter()
        for line, want in ((b"MAIL FROM:<bench@client.test>\r\n", 250), (f"RCPT TO:<{rcpt}>\r\n".encode(), 250),
                           (b"DATA\r\n", 354)):
            writer.write(line)
            code = await _reply(reader)
            assert code == want, (line, code)
        writer.write(data + b".\r\n")
        code = await _reply(reader)
        assert code == 250, code
        latencies.append(time.perf_counter() - start)
    writer.write(b"QUIT\r\n")
    await _reply(reader)
    writer.close()


async def send_all(port: int, rcpt: str, messages: list[bytes], conns: int,
                   deadline: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    shares = [messages[i::conns] for i in range(conns)]
    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(_conn(port, rcpt, s, latencies) for s in shares)), deadline)
    return time.perf_counter() - start, latencies


def count_files(folder: Path) -> int:
    try:
        return sum(1 for _ in os.scandir(folder))
    except FileNotFoundError:
        return 0


def wait_files(folder: Path, n: int, deadline: float) -> float:
    end = time.monotonic() + deadline
    while count_files(folder) < n:
        if time.monotonic() > end:
            raise TimeoutError(f"only {count_files(folder)} of {n} in {folder}")
        time.sleep(0.005)
    return time.monotonic()


def steal() -> int:
    with open("/proc/stat") as fh:
        return int(fh.readline().split()[8])


# -- (a) the bare aiosmtpd Maildir server (peer-performance.md §5.2) ------------------------------
BARE = r'''
import asyncio, os, sys, time, itertools
from aiosmtpd.smtp import SMTP
port, maildir, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
seq = itertools.count()
for sub in ("tmp", "new", "cur"):
    os.makedirs(os.path.join(maildir, sub), exist_ok=True)
newdir = os.open(os.path.join(maildir, "new"), os.O_RDONLY | os.O_DIRECTORY)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        data = envelope.original_content
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(seq)}.bench,S={len(data)}"
        tmp = os.path.join(maildir, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        os.rename(tmp, os.path.join(maildir, "new", name))
        if mode == "dir":
            os.fsync(newdir)
        return "250 OK"
async def main():
    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(lambda: SMTP(handler, hostname="bare.test"), "127.0.0.1", port)
    print("ready", flush=True)
    await asyncio.sleep(float(sys.argv[4]))
asyncio.run(main())
'''


class Server:
    name = ""
    port = 0
    proc: subprocess.Popen | None = None

    def maildir_new(self) -> Path:
        raise NotImplementedError

    def clear(self) -> None:
        pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_port(port: int, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


class Bare(Server):
    def __init__(self, mode: str, max_seconds: int) -> None:
        self.name = f"aiosmtpd+fsync({mode})"
        self.dir = WORK / f"bare-{mode}"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", BARE, str(self.port), str(self.dir), mode,
                                      str(max_seconds)])
        wait_port(self.port)

    def maildir_new(self) -> Path:
        return self.dir / "new"

    def clear(self) -> None:
        for entry in os.scandir(self.dir / "new"):
            os.unlink(entry.path)


class Project(Server):
    """The real service process (main.py service) with one domain and one mailbox."""

    def __init__(self, max_seconds: int, logging_level: int = 2) -> None:
        self.name = "pop3-service"
        self.data = WORK / "project"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        ports = [free_port() for _ in range(5)]
        self.port = ports[2]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            ["timeout", str(max_seconds), sys.executable, str(ROOT / "main.py"), "service",
             "--data-dir", str(self.data),
             "--bind", "127.0.0.1", "--pop3-port", str(ports[0]), "--pop3s-port", str(ports[1]),
             "--smtp-port", str(ports[2]), "--submission-port", str(ports[3]), "--smtps-port", str(ports[4])],
            stdout=subprocess.DEVNULL, stderr=open(WORK / "project.log", "w"), env=env, cwd=ROOT)
        wait_port(self.port)
        winpop = [sys.executable, "-m", "service.winpop", "--data-dir", str(self.data)]
        subprocess.run(winpop + ["set", "logging", str(logging_level)], check=True, cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL)
        subprocess.run(winpop + ["add", "bench.test"], check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(winpop + ["add", "mbench@bench.test", "--password-stdin"], input=b"bench password 1\n",
                       check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        self.rcpt = "mbench@bench.test"

    def maildir_new(self) -> Path:
        return self.data / "mailroot" / "bench.test" / "mbench" / "new"

    def clear(self) -> None:
        # Empty through the store's own tables so counters and index stay consistent.
        sys.path.insert(0, str(ROOT))
        from sqlalchemy import delete, update

        from core.db import Database, sqlite_url
        from core.tables import Domain, Mailbox, Message
        db = Database(sqlite_url(next(self.data.glob("*.db"))))
        with db.write() as session:
            session.execute(delete(Message))
            session.execute(update(Mailbox).values(message_count=0, total_bytes=0))
            session.execute(update(Domain).values(message_count=0, total_bytes=0))
        db.dispose()
        for entry in os.scandir(self.maildir_new()):
            os.unlink(entry.path)


POSTFIX_MAILDIR = WORK / "home" / "mbench" / "Maildir"


class Postfix(Server):
    """Debian's Postfix, configured as peer-performance.md §5.1 (loopback 2525, local Maildir)."""

    def __init__(self) -> None:
        self.name = "postfix"
        self.port = 2525
        self.rcpt = "mbench@localhost"
        home = WORK / "home" / "mbench"
        if subprocess.run(["id", "mbench"], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-d", str(home), "-M", "-s", "/usr/sbin/nologin", "mbench"], check=True)
        home.mkdir(parents=True, exist_ok=True)
        shutil.chown(home, "mbench", "mbench")
        conf = {"myhostname": "bench.localdomain", "inet_interfaces": "loopback-only",
                "mydestination": "bench.localdomain, localhost.localdomain, localhost",
                "mynetworks": "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128", "home_mailbox": "Maildir/",
                "default_transport": "error", "relay_transport": "error",
                "maillog_file": "/var/log/postfix-bench.log", "inet_protocols": "ipv4"}
        main_cf = Path("/etc/postfix/main.cf")   # Debian's "No configuration" install leaves none
        if not main_cf.exists():
            main_cf.write_text("compatibility_level = 3.6\n")   # today's defaults: relay rules included
            subprocess.run(["newaliases"], check=False)
        subprocess.run(["postconf", "-e"] + [f"{k}={v}" for k, v in conf.items()], check=True)
        master = Path("/etc/postfix/master.cf")
        text = master.read_text()
        if "127.0.0.1:2525" not in text:
            text = text.replace("\nsmtp      inet", "\n#smtp      inet", 1)
            text += "\n127.0.0.1:2525 inet n - n - - smtpd\n"
            master.write_text(text)
        subprocess.run(["postconf", "-F", "*/*/chroot = n"], check=True)
        subprocess.run(["postfix", "stop"], capture_output=True)
        subprocess.run(["postfix", "start"], check=True, capture_output=True)
        wait_port(self.port)

    def maildir_new(self) -> Path:
        return POSTFIX_MAILDIR / "new"

    def clear(self) -> None:
        if self.maildir_new().exists():
            for entry in os.scandir(self.maildir_new()):
                os.unlink(entry.path)

    def stop(self) -> None:
        subprocess.run(["postfix", "stop"], capture_output=True)


def run_one(server: Server, rcpt: str, messages: list[bytes], conns: int) -> dict:
    server.clear()
    steal0 = steal()
    ack, latencies = asyncio.run(send_all(server.port, rcpt, messages, conns, deadline=300))
    start = time.monotonic() - ack
    done = wait_files(server.maildir_new(), len(messages), 300)
    return {"server": server.name, "conns": conns, "ack_rate": len(messages) / ack,
            "delivered_rate": len(messages) / (done - start), "p50_ms": statistics.median(latencies) * 1000,
            "steal_ticks": steal() - steal0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--msgs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, nargs="+", default=[1, 20])
    parser.add_argument("--no-postfix", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--logging", type=int, default=2, choices=range(4),
                        help="the service's logging level: 2 Medium (the product's default: a line per "
                             "message), 1 Minimum (warnings and errors only)")
    args = parser.parse_args()
    assert args.msgs <= 100_000 and all(c <= 200 for c in args.conns)
    WORK.mkdir(parents=True, exist_ok=True)
    max_seconds = 3600
    servers: list[Server] = []
    results = []
    try:
        servers.append(Project(max_seconds, args.logging))
        servers.append(Bare("file", max_seconds))
        servers.append(Bare("dir", max_seconds))
        if not args.no_postfix and shutil.which("postfix"):
            servers.append(Postfix())
        rcpts = {s.name: getattr(s, "rcpt", "mbench@bench.test") for s in servers}
        messages = {s.name: make_messages(args.msgs, rcpts[s.name]) for s in servers}
        for server in servers:   # warm-up
            run_one(server, rcpts[server.name], messages[server.name][:200], 4)
        for rnd in range(args.rounds):
            for conns in args.conns:
                for server in servers:
                    r = run_one(server, rcpts[server.name], messages[server.name], conns)
                    r["round"] = rnd
                    results.append(r)
                    print(f"round {rnd} {r['server']:24s} conns={conns:3d} ack {r['ack_rate']:7.1f}/s "
                          f"delivered {r['delivered_rate']:7.1f}/s p50 {r['p50_ms']:6.2f} ms steal {r['steal_ticks']}",
                          flush=True)
    finally:
        for server in servers:
            server.stop()
    print("\nmedians (msgs/s; ratio = median of the paired per-round ratios, ours / theirs):")
    ours = "pop3-service"
    for conns in args.conns:
        mine = {r["round"]: r for r in results if r["server"] == ours and r["conns"] == conns}
        for name in dict.fromkeys(r["server"] for r in results):
            rows = [r for r in results if r["server"] == name and r["conns"] == conns]
            ack = statistics.median(r["ack_rate"] for r in rows)
            dlv = statistics.median(r["delivered_rate"] for r in rows)
            line = f"  conns={conns:3d} {name:24s} ack {ack:7.1f} delivered {dlv:7.1f}"
            if name != ours:
                ratio = statistics.median(mine[r["round"]]["delivered_rate"] / r["delivered_rate"] for r in rows)
                line += f"   ours/theirs (delivered) {ratio:5.2f}"
            print(line)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
