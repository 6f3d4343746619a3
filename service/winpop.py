"""``winpop``: the original's command line (add, delete, list, lock, unlock, stat, changepwd,
createquotafile, migrateToAD, get, set, help) with modern extras, as a client of the service's
admin channel (DESIGN §2).

Every documented form of the original works: verbs in any case (``ADD``, ``Stat``), the slash
options (``/createuser``, ``/createuser:Password``, ``/deleteuser``, ``/user:Name``) before or after
a positional password, and its retired settings (``socket*``, ``threadcount``), which are
accepted with a note on what replaces them.

Exit status: 0 done; 1 refused or wrong input (the reason on stderr; a configuration error such as
an untrusted certificate or a missing token included); 2 usage; 3 only when the service cannot be
reached.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from core import passwords
from core.catalog import SETTINGS, port_in_use_note
from core.catalog import shown as shown_value
from core.errors import MailError, Unreachable
from core.ipc.client import AdminClient
from core.ipc.ops import STATS_MAX_MINUTES, STATS_SERIES
from core.ipc.protocol import split_host_port
from core.paths import default_data_dir

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
# The original's slash options (any case), as the long options they stand for.
SLASH_OPTIONS = {"/createuser": "--createuser", "/deleteuser": "--deleteuser", "/json": "--json",
                 "/?": "--help", "/help": "--help"}
# Slash options that carry a value after a colon: /createuser:Password, /user:Name.
SLASH_VALUE_OPTIONS = {"/createuser:": ("--createuser", "--password"), "/user:": (None, "--user")}
VERB_ALIASES = {"migratetoad": "migrate"}
LEVEL_NAMES = {0: "None", 1: "Minimum", 2: "Medium", 3: "Maximum"}

# The original's socket-pool and thread settings (winpop set socket*, threadcount). This service
# has no pool and no worker threads to tune; each name says what does that job here.
RETIRED_SETTINGS = {
    "socket": "the socket pool is gone: connections are accepted as they come, up to max_connections "
              "(and max_connections_per_ip per address); the excess is refused politely",
    "socketbacklog": "connections beyond the limit are refused politely at once instead of waiting in a backlog; "
                     "the limit is max_connections (and max_connections_per_ip per address)",
    "socketmax": "the limit on connections is max_connections (and max_connections_per_ip per address)",
    "socketmin": "no sockets are made in advance: each connection gets one when it arrives "
                 "(the limit is max_connections)",
    "socketthreshold": "no sockets are made in advance: each connection gets one when it arrives "
                       "(the limit is max_connections)",
    "threadcount": "there is no thread pool to size: one event loop serves every session; "
                   "the limit on sessions is max_connections",
}

HELP = {
    "add": "winpop add DOMAIN | winpop add NAME@DOMAIN [/createuser [PASSWORD] | /createuser:PASSWORD]\n"
           "           [--password-stdin] [--quota SIZE]\n"
           "  Create a domain, or a mailbox (asks for its password unless given; --password-stdin reads it\n"
           "  from stdin; a password on the command line is visible to other users).",
    "delete": "winpop delete DOMAIN | NAME@DOMAIN [/deleteuser]\n"
              "  Delete a domain with all its mailboxes and mail, or one mailbox (and its associated user).",
    "list": "winpop list [DOMAIN]\n  List the domains, or the mailboxes of one domain.",
    "lock": "winpop lock DOMAIN | NAME@DOMAIN\n  Refuse logons (mail is still delivered).",
    "unlock": "winpop unlock DOMAIN | NAME@DOMAIN\n  Allow logons again (a mailbox cannot be unlocked while "
              "its domain is locked).",
    "stat": "winpop stat [DOMAIN]\n  Mailboxes, messages and sizes per domain (or per mailbox of DOMAIN), "
            "and the service's counters.",
    "stats": "winpop stats [MINUTES]\n  Mail received, delivered and sent, POP3 sessions and failed logons\n"
             "  over the last hour (or MINUTES, up to 1440), with the queue and free disk space now;\n"
             "  --json: every minute's values (null: the service was not running).",
    "changepwd": "winpop changepwd NAME@DOMAIN [PASSWORD | --password-stdin]\n  Change a mailbox's password "
                 "(asks for it unless given).",
    "createquotafile": "winpop createquotafile NAME@DOMAIN [/user:NAME] [--quota SIZE]\n"
                       "  The original wrote a quota file for NTFS quotas. Quotas are built in here: this shows "
                       "the mailbox's\n  quota, or sets it with --quota (none: no quota); no file and no "
                       "account are needed.",
    "get": "winpop get [SETTING]\n  Show one setting, or every setting with what it means.",
    "set": "winpop set SETTING VALUE\n  Change a setting (e.g. winpop set logging 2, winpop set auth passwordfile;\n"
           "  yes/no settings take 1 or 0).",
    "import": "winpop import DIR\n  Import a Windows POP3 Service mail root (DIR\\<domain>\\P3_<name>.mbx\\*.eml); "
              "UIDLs are kept.",
    "migrate": "winpop migrate NAME@DOMAIN  (also: winpop migrateToAD NAME@DOMAIN)\n"
               "  Move a password-file mailbox to a directory entry, keeping its password; after the last one\n"
               "  the server uses the directory method.",
    "start": "winpop start [LISTENER]\n  Start the listeners (pop3, pop3s, smtp, submission, smtps), or one.",
    "stop": "winpop stop [LISTENER]\n  Stop listeners and end their sessions.",
    "pause": "winpop pause [LISTENER]\n  Refuse new connections, keep the sessions.",
    "resume": "winpop resume [LISTENER]\n  Accept connections again.",
    "restart": "winpop restart [LISTENER]\n  Stop, then start.",
    "status": "winpop status\n  State of the service and its listeners, and the certificate's SHA-256 fingerprint\n"
              "  (what winpop --fingerprint and the console's Connect to Another Computer pin).",
    "bans": "winpop bans\n  Addresses and login names banned after failed logons.",
    "unban": "winpop unban ADDRESS|LOGIN\n  Lift a ban.",
    "queue": "winpop queue [list | show ID | retry [ID] | delete ID]\n  The outgoing mail queue.",
    "relaytest": "winpop relaytest\n  Try the classic open-relay tricks against this server's SMTP port.",
    "audit": "winpop audit [N]\n  The newest N entries of the audit log (default 20).",
    "token": "winpop token create NAME | token list | token revoke NAME\n  Tokens for remote administration "
             "(winpop --host, the console's Connect to Another Computer). The token is shown once, at create.",
    "help": "winpop help [VERB]  (also: winpop --help, winpop /?)\n  This help.",
}
# How many words each verb takes after it: (at least, at most).
ARITY = {
    "add": (1, 2), "delete": (1, 1), "list": (0, 1), "lock": (1, 1), "unlock": (1, 1), "stat": (0, 1),
    "stats": (0, 1),
    "changepwd": (1, 2), "createquotafile": (1, 1), "get": (0, 1), "set": (2, 5), "import": (1, 1),
    "migrate": (1, 1), "start": (0, 1), "stop": (0, 1), "pause": (0, 1), "resume": (0, 1), "restart": (0, 1),
    "status": (0, 0), "bans": (0, 0), "unban": (1, 1), "queue": (0, 2), "relaytest": (0, 0), "audit": (0, 1),
    "token": (0, 2), "help": (0, 1),
}
OPTIONS_TEXT = (
    "Options: --data-dir DIR (or POP3SVC_DATA_DIR) picks the service; --json prints JSON;\n"
    "--host HOST[:PORT] administers another computer over TLS (token: POP3SVC_TOKEN or --token-stdin,\n"
    "--fingerprint SHA256 pins a self-signed certificate; 'winpop status' on that computer shows it).\n"
    "Verbs, options and setting names are case-insensitive; the original's /createuser, /deleteuser\n"
    "and /user: work too.\n"
    "Exit status: 0 done, 1 refused or wrong input, 2 usage, 3 the service cannot be reached.")


class Usage(Exception):
    """A command-line mistake (unknown verb, missing or extra words): exit 2."""


class WrongInput(Exception):
    """A value winpop itself refuses (two passwords differ, no token, no number): exit 1."""


class Cancelled(Exception):
    """Ctrl-C or Ctrl-D at a prompt: nothing was sent, exit 1 with one quiet line."""


def _kb(n: int) -> str:
    return f"{(n + 1023) // 1024:,} KB"


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(" KB", "").isdigit()


def _table(rows: list[list[str]], header: list[str], right: tuple[int, ...] = ()) -> str:
    """Columns as wide as their widest cell; numbers (and every cell of the ``right`` columns) to the right."""
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    def fmt(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i and (i in right or _numeric(str(c))) else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _state(item: dict) -> str:
    if item.get("locked"):
        return "Locked"
    if item.get("domain_locked"):
        return "Locked (domain)"
    return "Unlocked"


def _read_password(args: argparse.Namespace, *, confirm: bool = True) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise WrongInput("no password on standard input")
        return password
    if args.password:
        print("winpop: warning: a password on the command line is visible to other users; "
              "prefer the prompt or --password-stdin", file=sys.stderr)
        return str(args.password)
    if not sys.stdin.isatty():
        raise WrongInput("no password given: run in a terminal to be asked, or use --password-stdin")
    password = _prompt("Password: ")
    if confirm and _prompt("Confirm password: ") != password:
        raise WrongInput(passwords.CONFIRM_DIFFERS)
    return password


def _prompt(text: str) -> str:
    """Ask for a secret; Ctrl-C and Ctrl-D (end of input) both end winpop quietly."""
    try:
        return getpass.getpass(text)
    except (EOFError, KeyboardInterrupt):
        print(file=sys.stderr)   # the prompt left the cursor on its line
        raise Cancelled("cancelled at the password prompt; nothing was changed") from None


def _shown(name: str, value: Any) -> str:
    """A setting's value as ``get`` and ``set`` both print it: yes/no as 1/0 (the original's form),
    the logging level with its name, a secret as (set)."""
    value = shown_value(name, value)
    if name == "logging" and str(value).isdigit():
        return f"{value} ({LEVEL_NAMES.get(int(value), '?')})"
    if isinstance(value, bool):
        return "1" if value else "0"
    if value is None:
        return "(none)"
    return str(value)


class Winpop:
    """Runs one verb against the service and prints the answer."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.data_dir = (args.data_dir or default_data_dir()).expanduser()
        self._client: AdminClient | None = None

    @property
    def client(self) -> AdminClient:
        if self._client is None:
            if self.args.host:
                host, port = parse_host(self.args.host)
                self._client = AdminClient.over_tcp(host, port, self._token(), fingerprint=self.args.fingerprint
                                                    or os.environ.get("POP3SVC_FINGERPRINT", ""))
            else:
                self._client = AdminClient(self.data_dir)
        return self._client

    def _token(self) -> str:
        if self.args.token_stdin:
            token = sys.stdin.readline().strip()
            # Later prompts (a mailbox password) read on from stdin.
        else:
            token = os.environ.get("POP3SVC_TOKEN", "").strip()
        if not token:
            raise Usage("--host needs a token: set POP3SVC_TOKEN or use --token-stdin "
                        "(make one on the server with 'winpop token create NAME')")
        return token

    def out(self, result: Any, text: str) -> None:
        if self.args.json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        elif text:
            print(text)

    def run(self) -> None:
        getattr(self, f"do_{self.args.verb}")()

    # -- verbs ----------------------------------------------------------------------------
    def do_help(self) -> None:
        topic = self.args.target
        if topic:
            verb = VERB_ALIASES.get(topic.lower(), topic.lower())
            if verb not in HELP:
                raise Usage(f"no help for '{topic}'; verbs: {', '.join(HELP)}")
            print(HELP[verb])
            return
        print(help_text())

    def _need_target(self) -> str:
        if self.args.target is None:
            raise Usage(f"'{self.args.verb}' needs a domain or NAME@DOMAIN; see 'winpop help {self.args.verb}'")
        return self.args.target

    def do_add(self) -> None:
        target = self._need_target()
        if "@" not in target:
            if self.args.password or self.args.createuser:
                raise Usage("a domain takes no password and no /createuser; " + HELP["add"])
            result = self.client.call("domain.add", name=target)
            self.out(result, f"Added domain {result['name']}.")
            return
        params: dict[str, Any] = {"address": target, "create_user": True if self.args.createuser else None}
        if self.args.quota is not None:
            params["quota"] = self.args.quota
        info = self.client.call("server.info")
        needs_password = (info["auth"] == "passwordfile" or self.args.createuser or self.args.password_stdin
                          or self.args.password)
        if needs_password:
            params["password"] = _read_password(self.args)
        result = self.client.call("mailbox.add", **params)
        self.out(result, f"Added mailbox {result['address']}. Mail clients log on as {result['address']}.")

    def do_delete(self) -> None:
        target = self._need_target()
        if "@" in target:
            result = self.client.call("mailbox.delete", address=target, delete_user=bool(self.args.deleteuser))
            self.out(result, f"Deleted mailbox {result['address']} and its mail.")
        else:
            result = self.client.call("domain.delete", name=target, delete_users=bool(self.args.deleteuser))
            self.out(result, f"Deleted domain {result['name']} with its mailboxes and mail.")

    def do_list(self) -> None:
        if self.args.target:
            result = self.client.call("mailbox.list", domain=self.args.target)
            rows = [[m["name"], f"{m['message_count']:,}", _kb(m["total_bytes"]), _state(m)] for m in result["items"]]
            text = (f"Mailboxes in {result['domain']} ({result['total']}):\n" +
                    (_table(rows, ["Mailbox", "Messages", "Size", "State"]) if rows else "  (none)"))
        else:
            result = self.client.call("domain.list")
            rows = [[d["display_name"], f"{d['mailbox_count']:,}", f"{d['message_count']:,}",
                     _kb(d["total_bytes"]), _state(d)] for d in result["items"]]
            text = (f"Domains ({result['total']}):\n" +
                    (_table(rows, ["Domain", "Mailboxes", "Messages", "Size", "State"]) if rows else "  (none)"))
        self.out(result, text)

    def _lock(self, lock: bool) -> None:
        target = self._need_target()
        if "@" in target:
            kind = "mailbox"
            result = self.client.call("mailbox.lock" if lock else "mailbox.unlock", address=target)
        else:
            kind = "domain"
            result = self.client.call("domain.lock" if lock else "domain.unlock", name=target)
        shown = result.get("address") or result.get("name")
        self.out(result, f"{'Locked' if lock else 'Unlocked'} {kind} {shown}.")

    def do_lock(self) -> None:
        self._lock(True)

    def do_unlock(self) -> None:
        self._lock(False)

    def do_stat(self) -> None:
        result = self.client.call("stat", **({"domain": self.args.target} if self.args.target else {}))
        if self.args.target:
            rows = [[m["name"], f"{m['message_count']:,}", _kb(m["total_bytes"]), _state(m)] for m in result["items"]]
            table = _table(rows, ["Mailbox", "Messages", "Size", "State"]) if rows else ""
            text = (f"Domain {result['domain']}: {result['mailboxes']:,} mailboxes, {result['messages']:,} messages, "
                    f"{_kb(result['bytes'])}\n" + table)
        else:
            rows = [[d["display_name"], f"{d['mailbox_count']:,}", f"{d['message_count']:,}", _kb(d["total_bytes"]),
                     _state(d)] for d in result["items"]]
            text = (f"{result['domains']:,} domains, {result['mailboxes']:,} mailboxes, {result['messages']:,} "
                    f"messages, {_kb(result['bytes'])}\n" +
                    (_table(rows, ["Domain", "Mailboxes", "Messages", "Size", "State"]) + "\n" if rows else ""))
            counters = result.get("counters") or {}
            if counters:
                text += "\nService counters:\n" + "\n".join(f"  {k}: {v:,}" for k, v in sorted(counters.items()))
        self.out(result, text.rstrip())

    def do_stats(self) -> None:
        words = self.args.target or "60"
        if not words.isdigit() or not 1 <= int(words) <= STATS_MAX_MINUTES:
            raise WrongInput(f"'{words}' is not a number of minutes from 1 to {STATS_MAX_MINUTES}")
        result = self.client.call("stats.history", minutes=int(words))
        self.out(result, stats_text(result))

    def do_changepwd(self) -> None:
        target = self._need_target()
        password = _read_password(self.args)
        result = self.client.call("mailbox.set_password", address=target, password=password)
        self.out(result, f"Changed the password of {result['address']}.")

    def do_get(self) -> None:
        name = self.args.target
        if name and name.lower() in RETIRED_SETTINGS:
            self.out({"name": name.lower(), "retired": RETIRED_SETTINGS[name.lower()]},
                     f"{name.lower()}: not used by this service: {RETIRED_SETTINGS[name.lower()]}.")
            return
        result = self.client.call("settings.get", name=name) if name else self.client.call("settings.get")
        try:
            listeners = self.client.call("service.status").get("listeners")
        except MailError:
            listeners = None
        if name:
            lines = []
            for key, value in result.items():
                note = port_in_use_note(key, value, listeners)
                lines.append(f"{key}: {_shown(key, value)}" + (f" ({note})" if note else ""))
            self.out(result, "\n".join(lines))
            return
        described = {item["name"]: item for item in self.client.call("settings.describe")["items"]}
        lines = []
        for key, value in result.items():
            spec = described.get(key) or (SETTINGS[key].describe() if key in SETTINGS else {})
            label = spec.get("label") or key
            note = port_in_use_note(key, value, listeners)   # a command-line override differs (issue 13 §5)
            if note:
                label = f"{label} ({note})"
            lines.append(f"{key:<24}{_shown(key, value):<32}{label}")
            if spec.get("help"):
                lines.append(f"{'':<24}  {spec['help']}")
        self.out(result, "\n".join(lines))

    def do_set(self) -> None:
        name, values = self.args.target, self.args.words[1:]
        if name.lower() in RETIRED_SETTINGS:
            if not all(v.strip().isdigit() for v in values) or len(values) != (4 if name.lower() == "socket" else 1):
                raise WrongInput(f"'{name}' takes {'four numbers' if name.lower() == 'socket' else 'a number'}")
            text = f"{name.lower()} is not used by this service, nothing was changed: {RETIRED_SETTINGS[name.lower()]}."
            self.out({"name": name.lower(), "changed": False, "retired": RETIRED_SETTINGS[name.lower()]}, text)
            return
        if len(values) != 1:
            raise Usage("'set' takes one setting and one value (quote a value with spaces); " + HELP["set"])
        result = self.client.call("settings.set", name=name, value=values[0])
        text = f"{result['name']} is now {_shown(result['name'], result['value'])}."
        if result.get("restart"):
            text += f" Restart the {result['restart']} listener for it to take effect (winpop restart)."
        self.out(result, text)

    def do_createquotafile(self) -> None:
        target = self._need_target()
        if "@" not in target:
            raise Usage("'createquotafile' needs NAME@DOMAIN; " + HELP["createquotafile"])
        if self.args.quota is not None:
            quota = None if self.args.quota.strip().lower() in ("", "none", "0") else self.args.quota
            result = self.client.call("mailbox.set_quota", address=target, quota=quota)
        else:
            result = self.client.call("mailbox.get", address=target)
        quota_bytes = result.get("quota_bytes")
        text = ("No quota file is needed: this service keeps quotas itself, in its index. "
                f"{result['address']} has {'no quota' if not quota_bytes else 'a quota of ' + _mb(quota_bytes)}"
                f" ({_kb(result['total_bytes'])} used)"
                + (". Set one with: winpop createquotafile " + result["address"] + " --quota SIZE."
                   if self.args.quota is None else "."))
        if self.args.user:
            text += f" The account {self.args.user} is not charged: the quota belongs to the mailbox."
        self.out(result, text)

    def do_import(self) -> None:
        target = self._need_target()
        result = self.client.call("import.windows", path=str(Path(target).expanduser().resolve()))
        text = (f"Imported {result['domains']} domains, {result['mailboxes']} mailboxes and {result['messages']} "
                f"messages ({result['skipped']} already there).")
        for warning in result.get("warnings", []):
            text += f"\nNote: {warning}"
        self.out(result, text)

    def do_migrate(self) -> None:
        target = self._need_target()
        result = self.client.call("mailbox.migrate", address=target)
        text = (f"Migrated {result['address']} to the directory entry {result['entry']}"
                f"{' (created' if result['created'] else ' (existing'}"
                f"{', password carried over)' if result['password_carried'] else ')'}.")
        text += (" No password-file mailbox is left: the server now uses the directory method." if result["switched"]
                 else f" {result['remaining']} password-file mailboxes are left to migrate.")
        self.out(result, text)

    def _control(self, action: str) -> None:
        result = self.client.call("service.control", action=action, listener=self.args.target or "")
        self.out(result, self._status_text(result))

    def do_start(self) -> None:
        self._control("start")

    def do_stop(self) -> None:
        self._control("stop")

    def do_pause(self) -> None:
        self._control("pause")

    def do_resume(self) -> None:
        self._control("resume")

    def do_restart(self) -> None:
        self._control("restart")

    def do_status(self) -> None:
        result = self.client.call("server.info")   # service.status and the certificate
        text = self._status_text(result)
        tls = result.get("tls") or {}
        if tls.get("fingerprint"):
            text += (f"\nCertificate SHA-256 fingerprint: {tls['fingerprint']}\n"
                     "  (what winpop --host ... --fingerprint and the console's Connect to Another Computer pin)")
        elif tls.get("error"):
            text += f"\nCertificate: {tls['error']}"
        admin_tcp = result.get("admin_tcp") or {}
        if admin_tcp.get("port"):
            text += (f"\nRemote administration: {admin_tcp.get('state', '')} on "
                     f"{admin_tcp.get('address')}:{admin_tcp['port']}")
        self.out(result, text)

    @staticmethod
    def _status_text(result: dict) -> str:
        rows = [[lst["name"], lst["state"], f"{lst['address']}:{lst['port']}", "yes" if lst["tls"] else "no",
                 str(lst["sessions"])] for lst in result["listeners"]]
        text = f"Service: {result['state']}\n"
        if rows:
            text += _table(rows, ["Listener", "State", "Address", "TLS", "Sessions"])
        errors = [f"{lst['name']}: {lst['error']}" for lst in result["listeners"] if lst.get("error")]
        if errors:
            text += "\n" + "\n".join(errors)
        for disk in result.get("disk") or []:   # a full or nearly full disk is said first-hand
            if disk.get("state") in ("full", "low"):
                text += (f"\nDisk {disk['state'].upper()}: the {disk['what']} ({disk['path']}): "
                         f"{_mb(disk['free_bytes'])} free of {_mb(disk['total_bytes'])}")
        problems = result.get("store_problems") or {}
        if problems.get("total"):
            items = problems.get("items") or []
            text += (f"\nThe mail store has {problems['total']} problem(s) it could not fix:\n"
                     + "\n".join(f"  {p['path']}: {p['problem']}" for p in items[:20]))
            if problems["total"] > min(len(items), 20):
                text += f"\n  ... and {problems['total'] - min(len(items), 20)} more"
        return text.rstrip()

    def do_bans(self) -> None:
        result = self.client.call("ban.list")
        rows = [[b["kind"], b["value"], str(b.get("failures", "")), str(b.get("expires_at", ""))]
                for b in result["items"]]
        self.out(result, _table(rows, ["Kind", "Banned", "Failures", "Until"]) if rows else "No bans.")

    def do_unban(self) -> None:
        result = self.client.call("ban.lift", value=self._need_target())
        self.out(result, f"Lifted {result['lifted']} ban(s).")

    def do_queue(self) -> None:
        sub = (self.args.target or "list").lower()
        ident = self.args.value
        if ident is not None and not ident.isdigit():
            raise WrongInput(f"'{ident}' is not a queue id: a number as 'winpop queue list' shows")
        if sub == "list":
            result = self.client.call("queue.list")
            rows = [[str(q.get("id")), str(q.get("sender", "")), ", ".join(q.get("recipients", [])) if
                     isinstance(q.get("recipients"), list) else str(q.get("recipients", "")),
                     str(q.get("attempts", "")), str(q.get("next_attempt", "")), str(q.get("last_error", ""))[:60]]
                    for q in result["items"]]
            self.out(result, _table(rows, ["Id", "From", "To", "Tries", "Next try", "Last error"]) if rows
                     else "The queue is empty.")
        elif sub == "show" and ident:
            result = self.client.call("queue.show", id=int(ident))
            self.out(result, _queued_text(result))
        elif sub == "retry":
            result = self.client.call("queue.retry", **({"id": int(ident)} if ident else {}))
            self.out(result, f"Retrying {result['retried']} message(s) now.")
        elif sub == "delete" and ident:
            result = self.client.call("queue.delete", id=int(ident))
            self.out(result, f"Deleted {result['deleted']} message(s) from the queue.")
        else:
            raise Usage(HELP["queue"])

    def do_relaytest(self) -> None:
        result = self.client.call("relay.test")
        rows = [[r.get("trick", ""), r.get("recipient", ""), "RELAYED" if r.get("relayed") else "refused",
                 str(r.get("reply", ""))[:50]] for r in result["items"]]
        verdict = ("OPEN RELAY: some tricks were accepted!" if any(r.get("relayed") for r in result["items"])
                   else "Not an open relay: every trick was refused.")
        self.out(result, _table(rows, ["Trick", "Recipient", "Result", "Reply"]) + "\n" + verdict)

    def do_token(self) -> None:
        sub = (self.args.target or "list").lower()
        if sub == "create" and self.args.value:
            result = self.client.call("admin.token_create", name=self.args.value)
            self.out(result, f"Token '{result['name']}' (shown only now; keep it like a password):\n"
                             f"{result['token']}\n"
                             "Use it with: POP3SVC_TOKEN=... winpop --host HOST[:PORT] ..., or in the console's "
                             "File > Connect to Another Computer.")
        elif sub == "list":
            result = self.client.call("admin.token_list")
            rows = [[t["name"], str(t.get("created_at") or "")[:19], t.get("created_by") or "",
                     str(t.get("last_used_at") or "never")[:19], t.get("last_used_from") or ""]
                    for t in result["items"]]
            self.out(result, _table(rows, ["Token", "Created (UTC)", "By", "Last used", "From"]) if rows
                     else "No admin tokens.")
        elif sub == "revoke" and self.args.value:
            result = self.client.call("admin.token_revoke", name=self.args.value)
            self.out(result, f"Revoked the token '{self.args.value}'.")
        else:
            raise Usage(HELP["token"])

    def do_audit(self) -> None:
        if self.args.target and not self.args.target.isdigit():
            raise WrongInput(f"'{self.args.target}' is not a number of entries")
        limit = int(self.args.target) if self.args.target else 20
        result = self.client.call("audit.list", limit=limit)
        rows = [[a["at"][:19], a["actor"], a["op"], a["target"], a["outcome"]] for a in result["items"]]
        self.out(result, _table(rows, ["When (UTC)", "Who", "Operation", "Target", "Outcome"]) if rows else "(empty)")


def stats_text(result: dict[str, Any]) -> str:
    """``winpop stats``: per series the total over the period (counts) or the value now (levels),
    and the busiest minute; minutes without data (the service was not running) are said."""
    series = result.get("series") or {}
    minutes = max((len(v) for v in series.values()), default=0)
    end = datetime.fromtimestamp(int(result.get("end") or 0)).astimezone()
    period = "hour" if minutes == 60 else ("day" if minutes == 1440 else f"{minutes} minutes")
    rows = []
    for name, spec in STATS_SERIES.items():
        values = [v for v in series.get(name) or [] if v is not None]
        unit = f" {spec.unit}" if spec.unit else ""
        if spec.counted:
            total = f"{sum(values):,}" if values else "-"
            busiest = f"{max(values):,}" if values else "-"
            rows.append([spec.label, total, busiest])
        else:
            rows.append([spec.label + " now", f"{values[-1]:,}{unit}" if values else "-", ""])
    text = (f"The last {period}, to {end:%H:%M} ({minutes} minute(s)):\n"
            + _table(rows, ["", f"Last {period}", "Busiest minute"], right=(1, 2)))
    missing = sum(1 for v in series.get("received") or [] if v is None)
    if missing:
        text += f"\nNo data for {missing} minute(s): the service was not running then."
    return text


def _queued_text(item: dict[str, Any]) -> str:
    """One queued message (``queue show``) as text: envelope, each recipient's state, the headers."""
    lines = [f"Message {item.get('id')} ({item.get('queue_id', '')}), {_kb(int(item.get('size') or 0))}",
             f"From: {item.get('sender', '')}",
             f"Submitted by: {item.get('submitted_by') or '-'} from {item.get('client') or '-'} "
             f"at {str(item.get('created_at', ''))[:19]}"]
    for state in item.get("recipient_states") or []:
        line = (f"  {state.get('address')}: {state.get('status')}, {state.get('attempts')} tries, "
                f"next {str(state.get('next_attempt', ''))[:19]}")
        if state.get("in_progress"):
            line += " (being delivered now)"
        if state.get("last_error"):
            line += f"\n    last error: {state['last_error']}"
        lines.append(line)
    lines += ["", str(item.get("headers", "")).rstrip(), "", str(item.get("body_preview", "")).rstrip()]
    if item.get("body_truncated"):
        lines.append("[... the rest of the body is not shown]")
    return "\n".join(lines)


def help_text() -> str:
    """``winpop help`` and ``winpop --help``: every verb, the options and the exit codes."""
    return "\n".join(["winpop: administer the POP3 Service from a shell.", "", *HELP.values(), "", OPTIONS_TEXT,
                      "Settings ('winpop get' describes them): " + ", ".join(sorted(SETTINGS))])


def parse_host(text: str) -> tuple[str, int]:
    """'mail.example.com', 'mail.example.com:9110', '[::1]:9110' → (host, port)."""
    parsed = split_host_port(text)
    if parsed is None:
        raise WrongInput(f"'{text}' is not HOST[:PORT]")
    return parsed


class _Parser(argparse.ArgumentParser):
    """argparse that raises Usage instead of printing its own usage and exiting."""

    def error(self, message: str) -> Any:
        raise Usage(f"{message}; see 'winpop help'")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="winpop", add_help=False, description="Administer the POP3 Service (see 'winpop help').")
    parser.add_argument("-h", "--help", action="store_true", help="list the verbs")
    parser.add_argument("--data-dir", type=Path, default=None, help="the service's data directory")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--host", default=None, help="administer the service on HOST[:PORT] over its remote "
                        "administration listener (TLS; token from POP3SVC_TOKEN or --token-stdin)")
    parser.add_argument("--token-stdin", action="store_true", help="read the admin token from standard input")
    parser.add_argument("--fingerprint", default="", help="the SHA-256 fingerprint of the server's certificate "
                        "(for a self-signed one; also POP3SVC_FINGERPRINT)")
    parser.add_argument("--createuser", action="store_true", help="create the associated user")
    parser.add_argument("--deleteuser", action="store_true", help="also delete the associated user")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--password", default=None, help=argparse.SUPPRESS)   # /createuser:Password
    parser.add_argument("--user", default=None, help=argparse.SUPPRESS)       # createquotafile /user:Name
    parser.add_argument("--quota", default=None, help="mailbox quota (bytes, or with KB/MB/GB)")
    parser.add_argument("words", nargs="*", help="VERB and its words")
    return parser


def _translate(argv: list[str]) -> list[str]:
    """The original's slash options (any case) as long options; long options in any case."""
    out = []
    for arg in argv:
        lower = arg.lower()
        if lower in SLASH_OPTIONS:
            out.append(SLASH_OPTIONS[lower])
            continue
        prefix = next((p for p in SLASH_VALUE_OPTIONS if lower.startswith(p)), None)
        if prefix is not None:
            flag, option = SLASH_VALUE_OPTIONS[prefix]
            out.extend(([flag] if flag else []) + [f"{option}={arg[len(prefix):]}"])
        elif arg.startswith("--"):
            name, eq, value = arg.partition("=")
            out.append(name.lower() + eq + value)
        else:
            out.append(arg)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line as one namespace: ``verb`` (lower case, aliases resolved), ``words`` after it,
    ``target`` and ``value`` (its first two), ``password`` (given on the command line, or None)."""
    args = build_parser().parse_intermixed_args(_translate(argv))
    words = list(args.words)
    verb = words.pop(0).lower() if words else "help"
    verb = VERB_ALIASES.get(verb, verb)
    if args.help:
        words, verb = ([verb] if verb != "help" else words), "help"
    if verb not in ARITY:
        raise Usage(f"unknown verb '{verb}'; see 'winpop help'")
    least, most = ARITY[verb]
    if verb in ("add", "changepwd") and args.password is not None:
        most = 1   # /createuser:Password already gave it
    if not least <= len(words) <= most:
        raise Usage(f"'{verb}' takes {least if least == most else f'{least} to {most}'} word(s) after it, "
                    f"not {len(words)}:\n{HELP[verb]}")
    args.verb, args.words = verb, words
    args.target = words[0] if words else None
    args.value = words[1] if len(words) > 1 else None
    # The original's `add NAME@DOMAIN /createuser Password` and `changepwd NAME@DOMAIN Password`.
    if verb in ("add", "changepwd") and args.value is not None:
        args.password, args.value = args.value, None
    return args


def main(argv: list[str] | None = None) -> int:
    tool: Winpop | None = None
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
        tool = Winpop(args)
        tool.run()
    except Usage as exc:
        print(f"winpop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (WrongInput, Cancelled) as exc:
        print(f"winpop: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Unreachable as exc:   # raised by the client only: the service is not there
        print(f"winpop: {exc.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except MailError as exc:     # refused by the service, or by the client's checks (an untrusted certificate)
        print(f"winpop: {exc.for_command_line()}", file=sys.stderr)   # with the command advice, if any
        return EXIT_REFUSED
    except (KeyboardInterrupt, EOFError):
        print("\nwinpop: interrupted", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        if tool is not None and tool._client is not None:
            tool._client.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
