"""Caller pseudonyms: a keyed hash, a key kept in the data dir by ``gridpulse up``, and a
worker that refuses the built-in key outside the local dev stack."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import stat
import subprocess
import sys

import pytest

from core.settings import DEV_CALLER_SALT, REPO_ROOT, Settings
from gridpulse.cli import _settings
from gridpulse.worker import caller_salt_refusal, is_local_dev
from infra.caller_salt import CALLER_SALT_FILE, ensure_caller_salt, read_caller_salt
from infra.stack import LocalStack
from streams.normalize import hash_caller
from tests.services import stack_settings


def test_caller_hash_is_an_hmac_of_the_id():
    key, caller = b"k3y", "13800138000"
    expected = hmac.new(key, caller.encode(), hashlib.sha256).hexdigest()[:32]
    assert hash_caller(caller, key) == expected
    assert hash_caller(caller, b"other") != expected
    assert hash_caller("", key) == "" and hash_caller(None, key) == ""


def test_the_key_is_created_once_and_private(tmp_path):
    assert read_caller_salt(tmp_path) is None
    key = ensure_caller_salt(tmp_path)
    assert len(bytes.fromhex(key)) == 32
    path = tmp_path / CALLER_SALT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_caller_salt(tmp_path) == key == read_caller_salt(tmp_path)
    assert ensure_caller_salt(tmp_path / "other") != key


def test_an_emptied_key_file_is_an_error_not_a_new_key(tmp_path):
    (tmp_path / CALLER_SALT_FILE).write_text("\n")
    with pytest.raises(OSError, match="is empty"):
        ensure_caller_salt(tmp_path)


def test_up_keeps_a_key_in_the_data_dir(tmp_path):
    settings = stack_settings(tmp_path / "stack")
    stack = LocalStack(settings, with_clickhouse_server=False)
    try:
        stack.up()
        first = read_caller_salt(settings.data_dir)
        stack.down()
        stack.up()
        assert first and read_caller_salt(settings.data_dir) == first
    finally:
        stack.down()


def _env(monkeypatch, tmp_path, **values: str) -> None:
    for k in [k for k in os.environ if k.startswith("GRIDPULSE_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("GRIDPULSE_DATA_DIR", str(tmp_path))
    for k, v in values.items():
        monkeypatch.setenv(k, v)


def test_commands_use_the_kept_key_unless_one_is_set(monkeypatch, tmp_path):
    _env(monkeypatch, tmp_path)
    args = argparse.Namespace()
    assert _settings(args).caller_salt.get_secret_value() == DEV_CALLER_SALT
    key = ensure_caller_salt(tmp_path)
    assert _settings(args).caller_salt.get_secret_value() == key
    monkeypatch.setenv("GRIDPULSE_CALLER_SALT", "from-the-environment")
    assert _settings(args).caller_salt.get_secret_value() == "from-the-environment"


@pytest.mark.parametrize(
    ("broker", "clickhouse", "local"),
    [
        ("kafka://127.0.0.1:9092", "chdb://.gridpulse/chdb", True),
        ("kafka://localhost:9092", "clickhouse://default:@127.0.0.1:9000/gp", True),
        ("kafka://broker-1:9092", "chdb://.gridpulse/chdb", False),
        ("kafka://127.0.0.1:9092", "clickhouse://gp:pw@ch-lb:9000/gridpulse", False),
        ("kafka://10.0.0.5:9092", "clickhouse://gp:pw@10.0.0.6:9000/gridpulse", False),
    ],
)
def test_the_built_in_key_is_refused_outside_the_local_stack(broker, clickhouse, local):
    s = Settings(broker=broker, clickhouse=clickhouse)  # type: ignore[call-arg]
    assert is_local_dev(s) is local
    refusal = caller_salt_refusal(s)
    assert (refusal is None) is local
    if refusal:
        assert "GRIDPULSE_CALLER_SALT" in refusal and "docs/deploy.md" in refusal
    own = Settings(broker=broker, clickhouse=clickhouse, caller_salt="a-secret")  # type: ignore[call-arg]
    assert caller_salt_refusal(own) is None


def test_the_worker_does_not_start_with_the_built_in_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDPULSE_")}
    env |= {
        "GRIDPULSE_BROKER": "kafka://broker-1.invalid:9092",
        "GRIDPULSE_DATA_DIR": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-m", "gridpulse.cli", "worker"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "gridpulse worker: error: GRIDPULSE_CALLER_SALT is the built-in" in run.stderr
    assert "Traceback" not in run.stderr
