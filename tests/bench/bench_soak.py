"""Soak benchmark (issue 14): a long, modest, mixed SMTP + POP3 + admin load against one service.

    python tests/bench/bench_soak.py [--minutes 60] [--sample-seconds 30] [--smtp-clients 4]
        [--pop3-clients 4] [--work /tmp/pop3soak] [--db-url postgresql+psycopg://...] [--out soak.csv]

One ``main.py service`` on 127.0.0.1 with free ports (tests/support.py ServiceProcess), a domain
of mailboxes, and client threads in this process, each pausing between operations (a sustained
load, not a saturation run):
  * SMTP clients (smtplib): per connection either port 25 (an outside sender to local mailboxes,
    STARTTLS on a quarter of them) or submission (STARTTLS + AUTH PLAIN as a mailbox, to other
    local mailboxes); 1-10 messages per connection, 1 KB ... 1 MB (mostly small), one or two
    recipients, each with a unique Message-ID, an X-Soak-Serial header and a digest of its body;
  * POP3 clients (poplib): take a mailbox no other client of this run holds, log on (STLS on a
    quarter), LIST, UIDL, RETR everything (the digest is checked), then DELE all, DELE half,
    RSET after DELE, or QUIT without DELE; the deletions count once QUIT said +OK;
  * one admin client (core.ipc.client.AdminClient over admin.sock): service.status, mailbox.list,
    stat, settings.get, and a throw-away mailbox added, locked, unlocked and deleted;
  * a sampler: every --sample-seconds the service's VmRSS (and RssAnon), VmHWM, threads, open
    fds and CPU time (/proc/PID), its sessions, and what the clients did in that window.
Every client reconnects after an error and counts it by kind. At the end the load stops, every
mailbox is drained over POP3, and every acknowledged message (250 after DATA) must have been
retrieved or be found in the drain, in the right mailbox, once (no duplicates); the index and
the Maildir folders must then be empty. "Levels off": the median RSS of the last quarter of the
run is within 10 % of the median of the second quarter (the first quarter is warm-up).
Exit status 0 when nothing was lost, nothing duplicated or corrupted, and memory levelled off.
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import itertools
import json
import os
import poplib
import random
import shutil
import signal
import smtplib
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core.ipc.client import AdminClient  # noqa: E402
from tests.support import ServiceProcess, unverified_tls, wait_for  # noqa: E402

DOMAIN = "soak.test"
PASSWORD = "soak-pw-1"
MAILBOXES = 8
TIMEOUT = 60.0               # every socket operation; a stuck service shows up as an error, not a hang
LEVEL_TOLERANCE = 0.10       # "levels off": last-quarter median RSS within 10 % of the second quarter's
# (weight, smallest, largest) octets of body: mostly small, a few up to 1 MB
SIZES = ((70, 1_000, 4_000), (20, 4_000, 64_000), (8, 64_000, 256_000), (2, 256_000, 1_000_000))


# -- bookkeeping ----------------------------------------------------------------------------------
@dataclass
class Ledger:
    """What every client did, shared by the threads (one lock: the rates are modest)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, tuple[str, ...]] = field(default_factory=dict)      # serial -> recipients (250 after DATA)
    unsure: set[int] = field(default_factory=set)      # connection lost after DATA: may or may not be there
    refused: set[int] = field(default_factory=set)     # answered with a 4xx/5xx: must not be there
    seen: dict[tuple[int, str], set[str]] = field(default_factory=dict)  # (serial, mailbox) -> UIDLs seen
    deleted: set[tuple[int, str]] = field(default_factory=set)           # DELE committed by QUIT +OK
    maybe_deleted: set[tuple[int, str]] = field(default_factory=set)     # DELE sent, QUIT's answer lost
    drained: set[tuple[int, str]] = field(default_factory=set)           # still there at the end
    corrupt: list[str] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)   # cumulative throughput counters
    admin_ms: list[float] = field(default_factory=list)
    smtp_ms: list[float] = field(default_factory=list)  # DATA sent -> reply, per message

    def count(self, **deltas: int) -> None:
        with self.lock:
            self.counts.update(deltas)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1


def error_kind(prefix: str, exc: BaseException) -> str:
    """A short, stable name for an exception (``smtp.SMTPServerDisconnected``)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{prefix}.reply_{exc.smtp_code}"
    if isinstance(exc, poplib.error_proto):
        text = exc.args[0] if exc.args else b""
        text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
        code = text.split("]")[0] + "]" if text.startswith("-ERR [") else "-ERR"
        return f"{prefix}.{code.replace('-ERR ', '')}"
    return f"{prefix}.{type(exc).__name__}"


# -- messages -------------------------------------------------------------------------------------
class MessageFactory:
    """Messages of mixed sizes; bodies are drawn from a few pre-built ones (cheap to send for an hour)."""

    def __init__(self, rng: random.Random) -> None:
        self._serials = itertools.count(1)
        self._lock = threading.Lock()
        self._bodies: dict[int, list[bytes]] = {}
        for bucket, (_, lo, hi) in enumerate(SIZES):
            self._bodies[bucket] = [self._body(rng, rng.randint(lo, hi), text=bucket < 2) for _ in range(6)]

    @staticmethod
    def _body(rng: random.Random, size: int, *, text: bool) -> bytes:
        """CRLF lines; text bodies have some lines starting with '.' (dot-stuffing, RFC 5321 §4.5.2)."""
        if not text:
            raw = base64.encodebytes(rng.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
            return raw
        words = [b"soak", b"lorem", b"ipsum", b"dolor", b"sit", b"amet", b"mail", b"."]
        lines, total = [], 0
        while total < size:
            line = b" ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
            if rng.random() < 0.03:
                line = b"." + line
            lines.append(line)
            total += len(line) + 2
        return b"\r\n".join(lines) + b"\r\n"

    def make(self, rng: random.Random, sender: str, rcpts: tuple[str, ...]) -> tuple[int, bytes]:
        """(serial, message) for ``sender`` to ``rcpts``."""
        with self._lock:
            serial = next(self._serials)
        bucket = rng.choices(range(len(SIZES)), weights=[w for w, _, _ in SIZES])[0]
        body = rng.choice(self._bodies[bucket])
        digest = body_digest(body.split(b"\r\n")[:-1])
        head = (f"From: <{sender}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}\r\n"
                f"Subject: soak {serial}\r\nMessage-ID: <soak.{serial}.{time.time_ns()}@client.test>\r\n"
                f"X-Soak-Serial: {serial}\r\nX-Soak-Digest: {digest}\r\n\r\n")
        return serial, head.encode() + body


def body_digest(lines: list[bytes]) -> str:
    """SHA-256 of a body given as its lines (no line ends), as both sides see it."""
    return hashlib.sha256(b"\n".join(lines)).hexdigest()[:32]


def parse_retrieved(lines: list[bytes]) -> tuple[int | None, bool]:
    """(serial, body intact?) of a message as poplib returns it (lines, un-stuffed)."""
    serial, digest, split = None, None, len(lines)
    for i, line in enumerate(lines):
        if not line:
            split = i
            break
        name, _, value = line.partition(b":")
        if name.lower() == b"x-soak-serial":
            serial = int(value.strip())
        elif name.lower() == b"x-soak-digest":
            digest = value.strip().decode()
    if serial is None:
        return None, False
    return serial, digest == body_digest(lines[split + 1:])


# -- the load -------------------------------------------------------------------------------------
class Load:
    """The client threads, their shared state, and the stop signal."""

    def __init__(self, proc: ServiceProcess, args: argparse.Namespace) -> None:
        self.proc = proc
        self.args = args
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.draining = False
        self.mailboxes = [f"user{i}@{DOMAIN}" for i in range(1, MAILBOXES + 1)]
        self._free = set(self.mailboxes)
        self._free_lock = threading.Lock()
        self.factory = MessageFactory(random.Random(14))
        self.tls = unverified_tls()

    def pause(self, rng: random.Random, mean: float) -> None:
        """Wait about ``mean`` seconds (0.5-1.5 x), or less if the run is stopping."""
        self.stop.wait(mean * rng.uniform(0.5, 1.5))

    def run_forever(self, body: Callable[[random.Random], None], prefix: str, seed: int) -> None:
        """Call ``body`` until stopped; an error is counted and the client starts over after a pause."""
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                body(rng)
            except Exception as exc:  # every failure is a figure of the run, never the end of it
                self.ledger.error(error_kind(prefix, exc))
                self.pause(rng, 1.0)

    # -- SMTP ---------------------------------------------------------------------------------
    def smtp_session(self, rng: random.Random) -> None:
        """One connection: port 25 from outside, or submission with AUTH; 1-10 messages."""
        submission = rng.random() < 0.5
        port = self.proc.ports["submission" if submission else "smtp"]
        user = rng.choice(self.mailboxes)
        with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=TIMEOUT) as smtp:
            if submission or rng.random() < 0.25:
                smtp.starttls(context=self.tls)
            smtp.ehlo_or_helo_if_needed()      # RFC 3207 §4.2: EHLO again after STARTTLS
            if submission:
                smtp.login(user, PASSWORD)
            self.ledger.count(smtp_sessions=1)
            for _ in range(rng.randint(1, 10)):
                if self.stop.is_set():
                    break
                others = [m for m in self.mailboxes if m != user] if submission else self.mailboxes
                rcpts = tuple(rng.sample(others, 2 if rng.random() < 0.1 else 1))
                sender = user if submission else f"client{rng.randint(1, 99)}@example.org"
                serial, data = self.factory.make(rng, sender, rcpts)
                self._send(smtp, serial, sender, rcpts, data)
                self.pause(rng, self.args.smtp_pause)
            smtp.quit()

    def _send(self, smtp: smtplib.SMTP, serial: int, sender: str, rcpts: tuple[str, ...], data: bytes) -> None:
        code, reply = smtp.mail(sender)
        if code != 250:
            smtp.rset()
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        for rcpt in rcpts:
            code, reply = smtp.rcpt(rcpt)
            if code != 250:
                smtp.rset()
                raise smtplib.SMTPRecipientsRefused({rcpt: (code, reply)})
        started = time.perf_counter()
        try:
            code, _ = smtp.data(data)     # smtplib converts to CRLF and dot-stuffs (RFC 5321 §4.5.2)
        except smtplib.SMTPResponseException:
            with self.ledger.lock:
                self.ledger.refused.add(serial)
            raise
        except Exception:
            with self.ledger.lock:
                self.ledger.unsure.add(serial)   # the 250 may have been lost on the way back
            raise
        with self.ledger.lock:
            self.ledger.acked[serial] = tuple(r.split("@")[0] for r in rcpts)
            self.ledger.smtp_ms.append((time.perf_counter() - started) * 1000)
            self.ledger.counts.update(smtp_msgs=1, smtp_rcpts=len(rcpts), smtp_bytes=len(data))

    # -- POP3 ---------------------------------------------------------------------------------
    def take_mailbox(self, rng: random.Random) -> str | None:
        with self._free_lock:
            if not self._free:
                return None
            box = rng.choice(sorted(self._free))
            self._free.discard(box)
            return box

    def give_back(self, box: str) -> None:
        with self._free_lock:
            self._free.add(box)

    def pop3_session(self, rng: random.Random) -> None:
        """One POP3 session on a mailbox no other client holds; then a pause."""
        box = self.take_mailbox(rng)
        if box is None:
            self.pause(rng, 0.5)
            return
        try:
            mode = rng.choices(("all", "half", "rset", "keep"), weights=(60, 20, 10, 10))[0]
            retrieve(self, box, mode=mode, stls=rng.random() < 0.25, rng=rng)
        finally:
            self.give_back(box)
        self.pause(rng, self.args.pop3_pause)

    # -- admin --------------------------------------------------------------------------------
    def admin_round(self, rng: random.Random) -> None:
        """One round of console-like requests on one connection; then a pause."""
        throwaway = f"tmp{rng.randrange(10**9)}@{DOMAIN}"
        with AdminClient(self.proc.data_dir, timeout=TIMEOUT) as client:
            steps: list[tuple[str, dict[str, Any]]] = [
                ("service.status", {}), ("mailbox.list", {"domain": DOMAIN}), ("stat", {}),
                ("settings.get", {}), ("mailbox.add", {"address": throwaway, "password": PASSWORD}),
                ("mailbox.lock", {"address": throwaway}), ("mailbox.unlock", {"address": throwaway}),
                ("mailbox.delete", {"address": throwaway}), ("stat", {"domain": DOMAIN})]
            for op, params in steps:
                started = time.perf_counter()
                client.call(op, **params)
                with self.ledger.lock:
                    self.ledger.admin_ms.append((time.perf_counter() - started) * 1000)
                    self.ledger.counts.update(admin_ops=1)
        self.pause(rng, self.args.admin_pause)


def retrieve(load: Load, box: str, *, mode: str, stls: bool, rng: random.Random) -> int:
    """Log on to ``box``, LIST, UIDL, RETR all; DELE per ``mode``; QUIT. Returns messages seen."""
    ledger = load.ledger
    client = poplib.POP3("127.0.0.1", load.proc.ports["pop3"], timeout=TIMEOUT)
    try:
        if stls:
            client.stls(context=load.tls)
        client.user(box)
        client.pass_(PASSWORD)
        ledger.count(pop3_sessions=1)
        listing = client.list()[1]
        uidls = dict(line.decode().split(" ", 1) for line in client.uidl()[1])
        name = box.split("@")[0]
        marked: list[tuple[int, str]] = []
        for entry in listing:
            number = entry.split()[0].decode()
            _, lines, octets = client.retr(int(number))
            serial, intact = parse_retrieved(lines)
            with ledger.lock:
                ledger.counts.update(pop3_retr=1, pop3_bytes=octets)
                if serial is None or not intact:
                    ledger.corrupt.append(f"{name} uidl {uidls.get(number)} serial {serial}")
                    continue
                ledger.seen.setdefault((serial, name), set()).add(uidls[number])
                if load.draining:
                    ledger.drained.add((serial, name))
            if mode == "all" or mode == "rset" or (mode == "half" and rng.random() < 0.5):
                client.dele(int(number))
                marked.append((serial, name))
        if mode == "rset" and marked:
            client.rset()          # RFC 1939 §5: every DELE of this session undone
            marked = []
        try:
            client.quit()          # RFC 1939 §6: the deletions take effect only now
        except Exception:
            with ledger.lock:
                ledger.maybe_deleted.update(marked)
            raise
        if not load.draining:      # the drain's own deletions are not part of the load
            with ledger.lock:
                ledger.deleted.update(marked)
                ledger.counts.update(pop3_deleted=len(marked))
        return len(listing)
    finally:
        client.close()


# -- the service process --------------------------------------------------------------------------
def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (of it RssAnon: heap, not file pages), VmHWM (KB), threads, open fds and CPU time (ms) of ``pid``."""
    out = {"rss_kb": 0, "anon_kb": 0, "hwm_kb": 0, "threads": 0, "fds": 0, "cpu_ms": 0}
    keys = {"VmRSS": "rss_kb", "RssAnon": "anon_kb", "VmHWM": "hwm_kb"}
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_ms"] = (int(fields[11]) + int(fields[12])) * 1000 // os.sysconf("SC_CLK_TCK")   # proc(5)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in keys:
                out[keys[key]] = int(value.split()[0])
            elif key == "Threads":
                out["threads"] = int(value)
        out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (all its threads')."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass
    return found


def setup(args: argparse.Namespace) -> ServiceProcess:
    """A fresh data directory, the service, the domain and its mailboxes, settings for the load."""
    data_dir = args.work / "service"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    for stale in args.work.glob("service-stdout.log"):
        stale.unlink()
    proc = ServiceProcess(data_dir, db_url=args.db_url)
    proc.start(timeout=120)
    # Loopback counts as a secure network (plaintext logons without TLS, like a local webmail), and
    # the per-user sending limit is off: the run sends thousands of messages as a few users.
    for name, value in (("trusted_networks", "127.0.0.1"), ("send_rate_limit", "0")):
        proc.call("settings.set", name=name, value=value)
    if any(d["name"] == DOMAIN for d in proc.call("domain.list")["items"]):
        proc.call("domain.delete", name=DOMAIN)     # a reused PostgreSQL database
    proc.call("domain.add", name=DOMAIN)
    for i in range(1, MAILBOXES + 1):
        proc.call("mailbox.add", address=f"user{i}@{DOMAIN}", password=PASSWORD)
    return proc


# -- the run --------------------------------------------------------------------------------------
COUNTERS = ("smtp_msgs", "smtp_rcpts", "smtp_bytes", "pop3_retr", "pop3_bytes", "pop3_deleted", "admin_ops")


def sample(load: Load, started: float, last: dict[str, int], window: float) -> dict[str, Any]:
    """One row: the service's memory and fds now, and the clients' rates over the last window."""
    pid = load.proc.proc.pid
    row: dict[str, Any] = {"t_s": round(time.monotonic() - started, 1), **proc_status(pid)}
    kids = children(pid)
    row["child_rss_kb"] = sum(proc_status(k)["rss_kb"] for k in kids)
    with load.ledger.lock:
        now = {k: load.ledger.counts[k] for k in COUNTERS}
        row["errors"] = sum(load.ledger.errors.values())
    for key in COUNTERS:
        row[f"{key}_per_s"] = round((now[key] - last.get(key, 0)) / window, 2)
    row["cpu_pct"] = round((row["cpu_ms"] - last.get("cpu_ms", row["cpu_ms"])) / window / 10, 1)
    last.update(now, cpu_ms=row["cpu_ms"])
    try:
        status = load.proc.call("service.status")
        row["sessions"] = sum(int(lst.get("sessions") or 0) for lst in status["listeners"])
    except Exception as exc:  # the sampler never stops the run
        load.ledger.error(error_kind("sampler", exc))
        row["sessions"] = -1
    return row


def run_load(load: Load, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Start the clients, sample until --minutes are over, stop the clients; the samples."""
    threads = [threading.Thread(target=load.run_forever, args=(load.smtp_session, "smtp", 100 + i),
                                name=f"smtp{i}", daemon=True) for i in range(args.smtp_clients)]
    threads += [threading.Thread(target=load.run_forever, args=(load.pop3_session, "pop3", 200 + i),
                                 name=f"pop3{i}", daemon=True) for i in range(args.pop3_clients)]
    threads.append(threading.Thread(target=load.run_forever, args=(load.admin_round, "admin", 300),
                                    name="admin", daemon=True))
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    last: dict[str, int] = {}
    samples.append(sample(load, started, last, 1.0))     # the baseline before any load
    for thread in threads:
        thread.start()
    end = started + args.minutes * 60
    next_at = started + args.sample_seconds
    while next_at <= end + 0.5:
        time.sleep(max(0.0, next_at - time.monotonic()))   # a fixed cadence, not synchronisation
        row = sample(load, started, last, args.sample_seconds)
        samples.append(row)
        print(f"  t={row['t_s']:7.0f}s rss {row['rss_kb'] / 1024:6.1f} MB (anon {row['anon_kb'] / 1024:5.1f}) "
              f"fds {row['fds']:4} "
              f"in {row['smtp_msgs_per_s']:5.1f}/s out {row['pop3_retr_per_s']:5.1f}/s "
              f"sessions {row['sessions']:3} errors {row['errors']}", flush=True)
        next_at += args.sample_seconds
        if load.proc.proc.poll() is not None:
            load.ledger.error("service_exited")
            break
    load.stop.set()
    for thread in threads:
        thread.join(TIMEOUT + 10)
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        load.ledger.errors["client_stuck"] += len(stuck)
    return samples


def drain(load: Load) -> None:
    """Retrieve and delete everything left in every mailbox (after the load has stopped)."""
    rng = random.Random(0)
    load.draining = True
    for box in load.mailboxes:
        def once(box: str = box) -> bool:
            try:
                retrieve(load, box, mode="all", stls=False, rng=rng)
                return True
            except poplib.error_proto as exc:
                if b"IN-USE" in (exc.args[0] if exc.args else b""):
                    return False   # a session of the load still closing
                raise
        wait_for(once, 60, interval=0.5, what=f"the drain of {box}")


def verdict(samples: list[dict[str, Any]], key: str, minutes: float) -> dict[str, Any]:
    """Median of ``key`` over the second and the last quarter of the run, and their ratio."""
    total = minutes * 60
    second = [s[key] for s in samples if total / 4 <= s["t_s"] < total / 2]
    last = [s[key] for s in samples if s["t_s"] >= total * 3 / 4]
    if not second or not last:
        return {"second_quarter": None, "last_quarter": None, "ratio": None, "levels_off": False}
    a, b = statistics.median(second), statistics.median(last)
    ratio = b / a if a else float("inf")
    return {"second_quarter": a, "last_quarter": b, "ratio": round(ratio, 3),
            "levels_off": abs(ratio - 1) <= LEVEL_TOLERANCE}


def account(load: Load) -> dict[str, Any]:
    """The 'nothing lost' check over the ledger, after the drain."""
    ledger = load.ledger
    expected = {(s, r) for s, rcpts in ledger.acked.items() for r in rcpts}
    seen = set(ledger.seen)
    # Every acknowledged copy was deleted by a committed QUIT or is still there for the drain.
    lost = sorted(expected - ledger.deleted - ledger.drained - ledger.maybe_deleted)
    # Twice: two UIDLs for one copy, or deleted by a committed QUIT and yet still there.
    duplicates = sorted({k for k, uidls in ledger.seen.items() if len(uidls) > 1} | (ledger.deleted & ledger.drained))
    stray = sorted(k for k in seen - expected if k[0] not in ledger.unsure)   # refused or misdelivered
    return {"acknowledged_messages": len(ledger.acked), "acknowledged_copies": len(expected),
            "copies_seen": len(seen & expected), "lost": len(lost), "lost_examples": lost[:10],
            "duplicates": len(duplicates), "duplicate_examples": duplicates[:10],
            "unexpected": len(stray), "unexpected_examples": stray[:10],
            "unsure_sent": len(ledger.unsure), "unsure_delivered": len({s for s, _ in seen if s in ledger.unsure}),
            "refused": len(ledger.refused), "corrupt": len(ledger.corrupt), "corrupt_examples": ledger.corrupt[:10],
            "deleted_during_load": len(ledger.deleted & expected), "drained_at_end": len(ledger.drained & expected),
            "quit_unanswered": len(ledger.maybe_deleted)}


def leftovers(proc: ServiceProcess) -> dict[str, Any]:
    """What the index and the Maildir folders still hold after the drain (both should be empty)."""
    stat = proc.call("stat")
    root = Path(proc.call("settings.get", name="mailroot")["mailroot"]) / DOMAIN
    files = sum(1 for sub in ("new", "cur", "tmp") for f in root.glob(f"*/{sub}/*") if f.is_file())
    return {"index_messages": stat["messages"], "index_bytes": stat["bytes"], "maildir_files": files}


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2) if values else 0.0


def percentile(values: list[float], fraction: float) -> float:
    return round(sorted(values)[int(len(values) * fraction)], 1) if values else 0.0


def write_out(path: Path, samples: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Samples as CSV (a .csv path) or samples and summary as JSON (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
    else:
        path.write_text(json.dumps({"samples": samples, "summary": summary}, indent=1, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--sample-seconds", type=float, default=30.0)
    parser.add_argument("--smtp-clients", type=int, default=4)
    parser.add_argument("--pop3-clients", type=int, default=4)
    parser.add_argument("--smtp-pause", type=float, default=0.5, help="mean seconds between messages per client")
    parser.add_argument("--pop3-pause", type=float, default=2.0, help="mean seconds between sessions per client")
    parser.add_argument("--admin-pause", type=float, default=5.0, help="mean seconds between admin rounds")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pop3soak"))
    parser.add_argument("--db-url", default=None, help="an empty PostgreSQL database (default: SQLite in --work)")
    parser.add_argument("--out", type=Path, default=None, help="samples: .csv, or .json with the summary "
                        "(default: WORK/soak.json)")
    args = parser.parse_args()
    if args.minutes * 60 < 8 * args.sample_seconds:
        parser.error("give at least 8 samples per run (each quarter needs some): lower --sample-seconds")
    if args.pop3_clients > MAILBOXES:
        parser.error(f"at most {MAILBOXES} POP3 clients (one mailbox each at a time)")
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or args.work / "soak.json"
    # SIGTERM (timeout(1), a CI job's end) unwinds like Ctrl-C, so the service is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    proc = setup(args)
    load = Load(proc, args)
    kids: list[int] = []
    pid = proc.proc.pid
    print(f"service pid {pid}, {args.minutes:g} min, {args.smtp_clients} SMTP + {args.pop3_clients} POP3 clients "
          f"+ 1 admin, a sample every {args.sample_seconds:g} s", flush=True)
    try:
        wall = time.monotonic()
        samples = run_load(load, args)
        load_seconds = time.monotonic() - wall
        final = proc_status(pid)
        kids = children(pid)
        rest: dict[str, Any] = {"index_messages": -1, "index_bytes": -1, "maildir_files": -1}
        try:
            drain(load)
            rest = leftovers(proc)
        except Exception as exc:  # reported (as lost mail, most likely), never a traceback instead of figures
            load.ledger.error(error_kind("drain", exc))
        accounting = account(load)
    finally:
        code = proc.stop(timeout=60)
    alive = [k for k in kids if Path(f"/proc/{k}").exists()]
    log_dir = proc.data_dir / "logs"
    logs = [p for p in [proc.log_path, *log_dir.glob("service.log*")] if p.exists()]
    tracebacks = sum(p.read_text(errors="replace").count("Traceback") for p in logs)

    loaded = samples[1:]
    ledger = load.ledger
    summary = {
        "minutes": args.minutes, "load_seconds": round(load_seconds, 1), "samples": len(samples),
        "db": "postgresql" if args.db_url else "sqlite",
        "clients": {"smtp": args.smtp_clients, "pop3": args.pop3_clients, "admin": 1},
        "totals": dict(ledger.counts),
        "median_per_s": {k: median([s[f"{k}_per_s"] for s in loaded]) for k in COUNTERS},
        "service_cpu_pct": {"median": median([s["cpu_pct"] for s in loaded]),
                            "max": max((s["cpu_pct"] for s in loaded), default=0)},
        "smtp_data_ms": {"median": median(ledger.smtp_ms), "p99": percentile(ledger.smtp_ms, 0.99)},
        "admin_ms": {"median": median(ledger.admin_ms), "max": round(max(ledger.admin_ms, default=0), 1)},
        "errors": dict(sorted(ledger.errors.items())),
        "accounting": accounting, "after_drain": rest,
        "rss_mb": {"baseline": round(samples[0]["rss_kb"] / 1024, 1), "end": round(final["rss_kb"] / 1024, 1),
                   "peak_hwm": round(final["hwm_kb"] / 1024, 1),
                   **{k: (round(v / 1024, 1) if k in ("second_quarter", "last_quarter") and v is not None else v)
                      for k, v in verdict(samples, "rss_kb", args.minutes).items()}},
        "anon_mb": {"baseline": round(samples[0]["anon_kb"] / 1024, 1), "end": round(final["anon_kb"] / 1024, 1)},
        "fds": verdict(samples, "fds", args.minutes), "threads": verdict(samples, "threads", args.minutes),
        "service_exit": code, "children_left": alive, "tracebacks_in_log": tracebacks,
        "log_bytes": sum(p.stat().st_size for p in logs),
    }
    write_out(out, samples, summary)
    ok = (accounting["lost"] == 0 and accounting["duplicates"] == 0 and accounting["unexpected"] == 0
          and accounting["corrupt"] == 0 and summary["rss_mb"]["levels_off"] and not alive
          and rest["index_messages"] == 0 and rest["maildir_files"] == 0 and code == 0 and tracebacks == 0)
    print_summary(summary, out)
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def print_summary(s: dict[str, Any], out: Path) -> None:
    """The table a person reads at the end."""
    a, r, m = s["accounting"], s["after_drain"], s["rss_mb"]
    rows = [
        ("run", f"{s['load_seconds']:.0f} s of load, {s['samples']} samples, {s['db']}"),
        ("messages acknowledged", f"{a['acknowledged_messages']} ({a['acknowledged_copies']} mailbox copies)"),
        ("copies deleted by POP3 / drained", f"{a['deleted_during_load']} / {a['drained_at_end']} "
                                             f"(RETR during the load: {s['totals'].get('pop3_retr', 0)})"),
        ("lost / duplicates / unexpected", f"{a['lost']} / {a['duplicates']} / {a['unexpected']}"),
        ("corrupt bodies", str(a["corrupt"])),
        ("connection lost after DATA", f"{a['unsure_sent']} (of them delivered: {a['unsure_delivered']})"),
        ("after the drain", f"index {r['index_messages']} messages, {r['maildir_files']} Maildir files"),
        ("in: msgs/s (median of windows)", f"{s['median_per_s']['smtp_msgs']} msgs, "
                                           f"{s['median_per_s']['smtp_bytes'] / 1e3:.0f} KB/s"),
        ("out: RETR/s, DELE/s (median)", f"{s['median_per_s']['pop3_retr']}, {s['median_per_s']['pop3_deleted']}"),
        ("admin ops/s (median)", str(s["median_per_s"]["admin_ops"])),
        ("service CPU % of one core", f"median {s['service_cpu_pct']['median']}, max {s['service_cpu_pct']['max']}"),
        ("SMTP DATA->250 ms", f"median {s['smtp_data_ms']['median']}, p99 {s['smtp_data_ms']['p99']}"),
        ("admin request ms", f"median {s['admin_ms']['median']}, max {s['admin_ms']['max']}"),
        ("errors by kind", ", ".join(f"{k} {v}" for k, v in s["errors"].items()) or "none"),
        ("RSS MB baseline / end / peak", f"{m['baseline']} / {m['end']} / {m['peak_hwm']}"),
        ("of it anonymous (heap) MB", f"{s['anon_mb']['baseline']} / {s['anon_mb']['end']}"),
        ("RSS MB median Q2 -> Q4", f"{m['second_quarter']} -> {m['last_quarter']} (x{m['ratio']}): "
                                   f"{'levels off' if m['levels_off'] else 'DOES NOT level off'}"),
        ("open fds median Q2 -> Q4", f"{s['fds']['second_quarter']} -> {s['fds']['last_quarter']}"),
        ("threads median Q2 -> Q4", f"{s['threads']['second_quarter']} -> {s['threads']['last_quarter']}"),
        ("service exit / children left", f"{s['service_exit']} / {s['children_left'] or 'none'}"),
        ("tracebacks in the log / log size", f"{s['tracebacks_in_log']} / {s['log_bytes'] / 1e6:.1f} MB"),
        ("samples written to", str(out)),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
