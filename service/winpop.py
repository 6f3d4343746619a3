"""``winpop``: the original's command line (add, delete, list, lock, unlock, stat, changepwd, get,
set, help) with modern extras, as a client of the service's admin channel (DESIGN §2).

Exit status: 0 success; 1 the service refused (the reason on stderr); 2 usage; 3 no service.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from core.catalog import SETTINGS, port_in_use_note
from core.catalog import shown as shown_value
from core.errors import MailError, Unavailable
from core.ipc.client import AdminClient
from core.ipc.protocol import split_host_port
from core.paths import default_data_dir

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
SLASH_OPTIONS = {"/createuser": "--createuser", "/deleteuser": "--deleteuser", "/json": "--json",
                 "/?": "--help", "/help": "--help"}
LEVEL_NAMES = {0: "None", 1: "Minimum", 2: "Medium", 3: "Maximum"}

HELP = {
    "add": "winpop add DOMAIN | winpop add NAME@DOMAIN [--createuser] [--password-stdin] [--quota SIZE]\n"
           "  Create a domain, or a mailbox (asks for its password; --password-stdin reads it from stdin).",
    "delete": "winpop delete DOMAIN | NAME@DOMAIN [--deleteuser]\n"
              "  Delete a domain with all its mailboxes and mail, or one mailbox (and its associated user).",
    "list": "winpop list [DOMAIN]\n  List the domains, or the mailboxes of one domain.",
    "lock": "winpop lock DOMAIN | NAME@DOMAIN\n  Refuse logons (mail is still delivered).",
    "unlock": "winpop unlock DOMAIN | NAME@DOMAIN\n  Allow logons again (a mailbox cannot be unlocked while "
              "its domain is locked).",
    "stat": "winpop stat [DOMAIN]\n  Mailboxes, messages and sizes per domain (or per mailbox of DOMAIN), "
            "and the service's counters.",
    "changepwd": "winpop changepwd NAME@DOMAIN [--password-stdin]\n  Change a mailbox's password.",
    "get": "winpop get [SETTING]\n  Show one setting or all of them.",
    "set": "winpop set SETTING VALUE\n  Change a setting (e.g. winpop set logging 2, winpop set auth passwordfile).",
    "import": "winpop import DIR\n  Import a Windows POP3 Service mail root (DIR\\<domain>\\P3_<name>.mbx\\*.eml); "
              "UIDLs are kept.",
    "migrate": "winpop migrate NAME@DOMAIN\n  Move a password-file mailbox to a directory entry, keeping its password "
               "(the original's migrateToAD); after the last one the server uses the directory method.",
    "start": "winpop start [LISTENER]\n  Start the listeners (pop3, pop3s, smtp, submission, smtps), or one.",
    "stop": "winpop stop [LISTENER]\n  Stop listeners and end their sessions.",
    "pause": "winpop pause [LISTENER]\n  Refuse new connections, keep the sessions.",
    "resume": "winpop resume [LISTENER]\n  Accept connections again.",
    "restart": "winpop restart [LISTENER]\n  Stop, then start.",
    "status": "winpop status\n  State of the service and its listeners.",
    "bans": "winpop bans\n  Addresses and login names banned after failed logons.",
    "unban": "winpop unban ADDRESS|LOGIN\n  Lift a ban.",
    "queue": "winpop queue [list | show ID | retry [ID] | delete ID]\n  The outgoing mail queue.",
    "relaytest": "winpop relaytest\n  Try the classic open-relay tricks against this server's SMTP port.",
    "audit": "winpop audit [N]\n  The newest N entries of the audit log (default 20).",
    "token": "winpop token create NAME | token list | token revoke NAME\n  Tokens for remote administration "
             "(winpop --host, the console's Connect to Another Computer). The token is shown once, at create.",
    "help": "winpop help [VERB]\n  This help.",
}


class Usage(Exception):
    """A command-line mistake: printed with the verb's usage, exit 2."""


def _kb(n: int) -> str:
    return f"{(n + 1023) // 1024:,} KB"


def _mb(n: int) -> str:
    return f"{n / 2**20:,.1f} MB"


def _numeric(text: str) -> bool:
    return bool(text) and text.replace(",", "").replace(" KB", "").isdigit()


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    def fmt(row: list[str]) -> str:
        cells = [str(c).rjust(w) if i and _numeric(str(c)) else str(c).ljust(w)
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
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
        if not password:
            raise Usage("no password on standard input")
        return password
    if getattr(args, "password", None):
        print("winpop: warning: a password on the command line is visible to other users; "
              "prefer the prompt or --password-stdin", file=sys.stderr)
        return args.password
    if not sys.stdin.isatty():
        raise Usage("no password given: run in a terminal to be asked, or use --password-stdin")
    password = getpass.getpass("Password: ")
    if confirm and getpass.getpass("Confirm password: ") != password:
        raise Usage("the two passwords differ")
    return password


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
        verb = self.args.verb
        handler = getattr(self, f"do_{verb}", None)
        if handler is None:
            raise Usage(f"unknown verb '{verb}'; see 'winpop help'")
        handler()

    # -- verbs ----------------------------------------------------------------------------
    def do_help(self) -> None:
        topic = self.args.target
        if topic:
            if topic not in HELP:
                raise Usage(f"no help for '{topic}'; verbs: {', '.join(HELP)}")
            print(HELP[topic])
            return
        print("winpop: administer the POP3 Service from a shell.\n")
        for text in HELP.values():
            print(text)
        print("\nOptions: --data-dir DIR (or POP3SVC_DATA_DIR) picks the service; --json prints JSON;\n"
              "--host HOST[:PORT] administers another computer over TLS (token: POP3SVC_TOKEN or --token-stdin,\n"
              "--fingerprint SHA256 pins a self-signed certificate).")
        print("Settings: " + ", ".join(sorted(SETTINGS)))

    def _need_target(self) -> str:
        if self.args.target is None:
            raise Usage(f"'{self.args.verb}' needs a domain or NAME@DOMAIN; see 'winpop help {self.args.verb}'")
        return self.args.target

    def do_add(self) -> None:
        target = self._need_target()
        if "@" not in target:
            result = self.client.call("domain.add", name=target)
            self.out(result, f"Added domain {result['name']}.")
            return
        params: dict[str, Any] = {"address": target, "create_user": True if self.args.createuser else None}
        if self.args.quota is not None:
            params["quota"] = self.args.quota
        info = self.client.call("server.info")
        needs_password = info["auth"] == "passwordfile" or self.args.createuser or self.args.password_stdin
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

    def do_changepwd(self) -> None:
        target = self._need_target()
        password = _read_password(self.args)
        result = self.client.call("mailbox.set_password", address=target, password=password)
        self.out(result, f"Changed the password of {result['address']}.")

    def do_get(self) -> None:
        if self.args.target:
            result = self.client.call("settings.get", name=self.args.target)
        else:
            result = self.client.call("settings.get")
        try:
            listeners = self.client.call("service.status").get("listeners")
        except MailError:
            listeners = None
        lines = []
        for name, value in result.items():
            note = port_in_use_note(name, value, listeners)
            shown = shown_value(name, value)   # a secret as (set), whatever the service sent
            if name == "logging":
                shown = f"{value} ({LEVEL_NAMES.get(int(value), '?')})"
            elif isinstance(value, bool):
                shown = "1" if value else "0"
            elif value is None:
                shown = "(none)"
            label = SETTINGS[name].label if name in SETTINGS else name
            if note:   # a command-line override differs from the stored port (issue 13 §5)
                shown, label = (f"{shown} ({note})", label) if self.args.target else (shown, f"{label} ({note})")
            lines.append(f"{name}: {shown}" if self.args.target else f"{name:<24}{shown!s:<32}{label}")
        self.out(result, "\n".join(lines))

    def do_set(self) -> None:
        if not self.args.target or self.args.value is None:
            raise Usage("'set' needs a setting and a value, e.g. winpop set logging 2")
        result = self.client.call("settings.set", name=self.args.target, value=self.args.value)
        text = f"{result['name']} is now {result['value']}."
        if result.get("restart"):
            text += f" Restart the {result['restart']} listener for it to take effect (winpop restart)."
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
        result = self.client.call("service.status")
        self.out(result, self._status_text(result))

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
        sub = self.args.target or "list"
        ident = self.args.value
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
            self.out(result, json.dumps(result, indent=2, ensure_ascii=False))
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
        sub = self.args.target or "list"
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
        limit = int(self.args.target) if self.args.target and self.args.target.isdigit() else 20
        result = self.client.call("audit.list", limit=limit)
        rows = [[a["at"][:19], a["actor"], a["op"], a["target"], a["outcome"]] for a in result["items"]]
        self.out(result, _table(rows, ["When (UTC)", "Who", "Operation", "Target", "Outcome"]) if rows else "(empty)")


def parse_host(text: str) -> tuple[str, int]:
    """'mail.example.com', 'mail.example.com:9110', '[::1]:9110' → (host, port)."""
    parsed = split_host_port(text)
    if parsed is None:
        raise Usage(f"'{text}' is not HOST[:PORT]")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="winpop", add_help=True,
                                     description="Administer the POP3 Service (see 'winpop help').")
    parser.add_argument("--data-dir", type=Path, default=None, help="the service's data directory")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument("--host", default=None, help="administer the service on HOST[:PORT] over its remote "
                        "administration listener (TLS; token from POP3SVC_TOKEN or --token-stdin)")
    parser.add_argument("--token-stdin", action="store_true", help="read the admin token from standard input")
    parser.add_argument("--fingerprint", default="", help="the SHA-256 fingerprint of the server's certificate "
                        "(for a self-signed one; also POP3SVC_FINGERPRINT)")
    parser.add_argument("verb", nargs="?", default="help")
    parser.add_argument("target", nargs="?", default=None)
    parser.add_argument("value", nargs="?", default=None)
    parser.add_argument("--createuser", action="store_true", help="create the associated user")
    parser.add_argument("--deleteuser", action="store_true", help="also delete the associated user")
    parser.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    parser.add_argument("--quota", default=None, help="mailbox quota (bytes, or with KB/MB/GB)")
    return parser


def _translate(argv: list[str]) -> list[str]:
    """Accept the original's slash options and its `/createuser Password` form."""
    out = []
    for arg in argv:
        lower = arg.lower()
        if lower in SLASH_OPTIONS:
            out.append(SLASH_OPTIONS[lower])
        elif lower.startswith("/createuser:"):
            out.extend(["--createuser", f"--legacy-password={arg.split(':', 1)[1]}"])
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = _translate(list(sys.argv[1:] if argv is None else argv))
    legacy = [a for a in argv if a.startswith("--legacy-password=")]
    argv = [a for a in argv if not a.startswith("--legacy-password=")]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    args.password = legacy[0].split("=", 1)[1] if legacy else None
    # The original's `add NAME@DOMAIN /createuser Password` and `changepwd NAME@DOMAIN Password`.
    if args.verb in ("add", "changepwd") and args.value is not None and not args.password:
        args.password, args.value = args.value, None
    tool = Winpop(args)
    try:
        tool.run()
    except Usage as exc:
        print(f"winpop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Unavailable as exc:
        print(f"winpop: {exc.message}", file=sys.stderr)
        # 3 only when the service cannot be reached; a refusal it sent (a full disk) is a 1.
        return EXIT_REFUSED if getattr(exc, "from_service", False) else EXIT_UNAVAILABLE
    except MailError as exc:
        print(f"winpop: {exc.message}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("winpop: interrupted", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        if tool._client is not None:
            tool._client.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
