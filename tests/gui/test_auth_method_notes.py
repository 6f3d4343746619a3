"""What the console tells the administrator about client settings with local accounts or a directory."""
from __future__ import annotations

import pytest

from core.catalog import SETTINGS
from gui.dialogs.mailbox_created import client_settings

PORTS = {"pop3": 110, "pop3s": 995, "submission": 587, "smtps": 465}


@pytest.mark.parametrize("auth,account", [("local", "alice@example.com (or alice)"),
                                          ("directory", "alice@example.com")], ids=["local", "directory"])
def test_spa_means_tls_with_local_accounts_and_a_directory(auth, account):
    rows = dict(client_settings({"address": "alice@example.com", "name": "alice"}, hostname="mail.example.com",
                                auth=auth, spa_required=True, ports=PORTS))
    assert rows["Account name"] == account
    assert rows["Secure Password Authentication (SPA)"].startswith("off: not available")
    assert "TLS is required" in rows["Note"]


def test_the_password_file_keeps_its_spa_account_name():
    rows = dict(client_settings({"address": "bob@example.com", "name": "bob"}, hostname="h", auth="passwordfile",
                                spa_required=True, ports=PORTS))
    assert rows["Account name (Secure Password Authentication)"] == "bob@example.com"
    assert "TLS is required" not in rows["Note"]


def test_the_server_properties_tooltip_explains_spa_for_these_methods():
    assert "means TLS is required" in SETTINGS["sparequired"].help
