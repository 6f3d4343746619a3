"""A service whose server key is not the one the database's secrets were sealed with (a second node
started without the first node's server.key, or a restored data directory with a new key) says
so at start, in its log and in server.info, and says what to do; the right key clears it."""
from __future__ import annotations

import secrets

import pytest

from tests.support import ServiceProcess


def test_a_foreign_server_key_is_reported_and_the_right_one_clears_it(tmp_path):
    service = ServiceProcess(tmp_path / "data").start()
    try:
        info = service.call("server.info")
        if info["keystore"] != "keyfile":
            pytest.skip("the server key is in a system keyring here; this test swaps key files")
        assert info["key_problem"] == ""
    finally:
        service.stop()
    key_file = tmp_path / "data" / "server.key"
    original = key_file.read_bytes()
    key_file.write_bytes(secrets.token_bytes(32))          # another node's key, say

    service.start()
    try:
        problem = service.call("server.info")["key_problem"]
        assert "not the key the database's stored secrets were sealed with" in problem
        assert "Copy server.key from the first node" in problem
        assert "server key" in service.output() and "Copy server.key" in service.output()
    finally:
        service.stop()

    key_file.write_bytes(original)
    service.start()
    try:
        assert service.call("server.info")["key_problem"] == ""
    finally:
        service.stop()
