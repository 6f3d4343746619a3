"""Each user action is a small function that sends one request and reacts to the answer.

Nothing here touches a model: the service publishes a change event after every committed
change and the models apply it, so the console looks the same whoever made the change.
Failures go to ``error_box.show_error`` unless the caller passes ``on_fail``. Every op named here
is an op of the table in core/ipc/ops.py with its parameters (the client refuses anything else,
and tests/test_op_table_users.py checks every call in gui/ and winpop against the table).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from PySide6.QtWidgets import QWidget

from core.errors import MailError
from gui.dialogs import error_box

Done = Callable[[Any], None] | None
Fail = Callable[[MailError], None] | None


class AdminRequests(Protocol):
    """What an action needs of the connection: gui.ipc_client.IpcClient (or the test double)."""

    def request(self, op: str, params: dict[str, Any] | None = None, on_ok: Callable[[Any], None] | None = None,
                on_err: Callable[[MailError], None] | None = None) -> None: ...


def _send(client: AdminRequests, op: str, params: dict[str, Any], *, parent: QWidget | None, doing: str,
          on_done: Done = None, on_fail: Fail = None) -> None:
    def failed(error: MailError) -> None:
        if on_fail is not None:
            on_fail(error)
        else:
            error_box.show_error(parent, error, doing=doing)

    client.request(op, params, on_done, failed)


# -- domains ---------------------------------------------------------------------------------
def add_domain(client: AdminRequests, *, parent: QWidget | None, name: str,
               on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "domain.add", {"name": name}, parent=parent, doing=f"create the domain {name}",
          on_done=on_done, on_fail=on_fail)


def delete_domain(client: AdminRequests, *, parent: QWidget | None, name: str, delete_users: bool = False,
                  on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "domain.delete", {"name": name, "delete_users": delete_users}, parent=parent,
          doing=f"delete the domain {name}", on_done=on_done, on_fail=on_fail)


def lock_domain(client: AdminRequests, *, parent: QWidget | None, name: str,
                on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "domain.lock", {"name": name}, parent=parent, doing=f"lock the domain {name}",
          on_done=on_done, on_fail=on_fail)


def unlock_domain(client: AdminRequests, *, parent: QWidget | None, name: str,
                  on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "domain.unlock", {"name": name}, parent=parent, doing=f"unlock the domain {name}",
          on_done=on_done, on_fail=on_fail)


# -- mailboxes -------------------------------------------------------------------------------
def add_mailbox(client: AdminRequests, *, parent: QWidget | None, address: str, password: str | None,
                create_user: bool | None, on_done: Done = None, on_fail: Fail = None) -> None:
    params: dict[str, Any] = {"address": address, "create_user": create_user}
    if password:
        params["password"] = password
    _send(client, "mailbox.add", params, parent=parent, doing=f"create the mailbox {address}",
          on_done=on_done, on_fail=on_fail)


def delete_mailbox(client: AdminRequests, *, parent: QWidget | None, address: str, delete_user: bool = False,
                   on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "mailbox.delete", {"address": address, "delete_user": delete_user}, parent=parent,
          doing=f"delete the mailbox {address}", on_done=on_done, on_fail=on_fail)


def lock_mailbox(client: AdminRequests, *, parent: QWidget | None, address: str,
                 on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "mailbox.lock", {"address": address}, parent=parent, doing=f"lock the mailbox {address}",
          on_done=on_done, on_fail=on_fail)


def unlock_mailbox(client: AdminRequests, *, parent: QWidget | None, address: str, on_done: Done = None,
                   on_fail: Fail = None) -> None:
    _send(client, "mailbox.unlock", {"address": address}, parent=parent, doing=f"unlock the mailbox {address}",
          on_done=on_done, on_fail=on_fail)


def change_password(client: AdminRequests, *, parent: QWidget | None, address: str, password: str,
                    on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "mailbox.set_password", {"address": address, "password": password}, parent=parent,
          doing=f"change the password of {address}", on_done=on_done, on_fail=on_fail)


def set_quota(client: AdminRequests, *, parent: QWidget | None, address: str, quota: int | str | None,
              on_done: Done = None, on_fail: Fail = None, expected: tuple[int | None] | None = None) -> None:
    """With ``expected`` ((the quota a property sheet showed,)) the service refuses the change
    ('conflict') if someone changed the quota since."""
    params: dict[str, Any] = {"address": address, "quota": quota}
    if expected is not None:
        params.update(check_quota=True, expected_quota=expected[0])
    _send(client, "mailbox.set_quota", params, parent=parent,
          doing=f"set the quota of {address}", on_done=on_done, on_fail=on_fail)


# -- settings and the service ----------------------------------------------------------------
def set_setting(client: AdminRequests, *, parent: QWidget | None, name: str, value: Any, on_done: Done = None,
                on_fail: Fail = None, expected_version: int | None = None) -> None:
    """With ``expected_version`` (the version a property sheet showed) the service refuses the change
    ('conflict') if someone changed the setting since."""
    params: dict[str, Any] = {"name": name, "value": value}
    if expected_version is not None:
        params["expected_version"] = expected_version
    _send(client, "settings.set", params, parent=parent,
          doing=f"change the setting '{name}'", on_done=on_done, on_fail=on_fail)


SERVICE_VERBS = {"start": "start", "stop": "stop", "pause": "pause", "resume": "resume"}


def control_service(client: AdminRequests, *, parent: QWidget | None, action: str, on_done: Done = None,
                    on_fail: Fail = None) -> None:
    _send(client, "service.control", {"action": action}, parent=parent, doing=f"{action} the POP3 Service",
          on_done=on_done, on_fail=on_fail)


# -- many targets at once ----------------------------------------------------------------------
def for_each(items: Sequence[str], send: Callable[..., None], *, parent: QWidget | None, doing: str,
             on_all_done: Callable[[], None] | None = None) -> None:
    """Run ``send(item, on_done=, on_fail=)`` for every item; report all failures in one box."""
    if not items:
        return
    failures: list[str] = []
    left = [len(items)]

    def finish() -> None:
        left[0] -= 1
        if left[0]:
            return
        if failures:
            shown = "\n".join(failures[:10]) + (f"\n… and {len(failures) - 10} more" if len(failures) > 10 else "")
            error_box.show_error(parent, shown, doing=doing)
        if on_all_done is not None:
            on_all_done()

    for item in items:
        def failed(error: MailError, item: str = item) -> None:
            failures.append(f"{item}: {error.message}")
            finish()
        send(item, on_done=lambda _r: finish(), on_fail=failed)


# -- outgoing queue, bans, relay test (the server's Queue and Bans panes) ------------------------
def retry_queued(client: AdminRequests, *, parent: QWidget | None, ident: int | None, on_done: Done = None) -> None:
    _send(client, "queue.retry", {"id": ident} if ident is not None else {}, parent=parent,
          doing="retry the queued mail" if ident is None else f"retry the queued message {ident}", on_done=on_done)


def delete_queued(client: AdminRequests, *, parent: QWidget | None, ident: int, on_done: Done = None) -> None:
    _send(client, "queue.delete", {"id": ident}, parent=parent, doing=f"delete the queued message {ident}",
          on_done=on_done)


def show_queued(client: AdminRequests, *, parent: QWidget | None, ident: int, on_done: Done = None) -> None:
    _send(client, "queue.show", {"id": ident}, parent=parent, doing=f"read the queued message {ident}",
          on_done=on_done)


def lift_ban(client: AdminRequests, *, parent: QWidget | None, value: str, on_done: Done = None) -> None:
    _send(client, "ban.lift", {"value": value}, parent=parent, doing=f"lift the ban on {value}", on_done=on_done)


def create_token(client: AdminRequests, *, parent: QWidget | None, name: str, on_done: Done = None,
                 on_fail: Fail = None) -> None:
    _send(client, "admin.token_create", {"name": name}, parent=parent, doing=f"create the token '{name}'",
          on_done=on_done, on_fail=on_fail)


def revoke_token(client: AdminRequests, *, parent: QWidget | None, name: str, on_done: Done = None) -> None:
    _send(client, "admin.token_revoke", {"name": name}, parent=parent, doing=f"revoke the token '{name}'",
          on_done=on_done)


def relay_test(client: AdminRequests, *, parent: QWidget | None, on_done: Done = None, on_fail: Fail = None) -> None:
    _send(client, "relay.test", {}, parent=parent, doing="test for an open relay", on_done=on_done, on_fail=on_fail)
