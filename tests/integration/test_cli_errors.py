"""The command line on a real chdb store: a user error is one line on stderr (no traceback unless --verbose),
a store without tables says what to do, and no message shows a password from a store or Kafka URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LLMSIGHT = str(Path(sys.executable).with_name("llmsight"))
SECRET = "s3cret-pw"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([LLMSIGHT, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("command", [["alerts", "list"], ["alerts", "silences"], ["alerts", "ack", "x", "--by", "me"],
                                     ["alerts", "unsilence", "x", "--by", "me"], ["export", "--week", "2026-W40"]],
                         ids=lambda c: " ".join(c[:2]))
def test_a_store_without_tables_gives_one_clear_line(tmp_path, command):
    url = f"chdb://{tmp_path / 'empty'}"
    done = _run(*command, *(["--out", str(tmp_path / "out")] if command[0] == "export" else []),
                LLMSIGHT_CLICKHOUSE_URL=url)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    # The one line (the export logs what it starts on before it).
    assert [line for line in done.stderr.splitlines() if " INFO " not in line] == [
        f"llmsight: error: no llmsight tables in chdb://{tmp_path / 'empty'}?database=llmsight; run `llmsight db "
        "migrate` or point LLMSIGHT_CLICKHOUSE_URL at your store"], done.stderr


def test_verbose_shows_the_traceback_too(tmp_path):
    done = _run("--verbose", "alerts", "list", LLMSIGHT_CLICKHOUSE_URL=f"chdb://{tmp_path / 'empty'}")
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "UNKNOWN_TABLE" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("llmsight: error: no llmsight tables in chdb://")


def test_the_store_named_by_url_is_the_one_shown(tmp_path):
    done = _run("alerts", "list", "--url", f"chdb://{tmp_path / 'other'}?database=mine",
                LLMSIGHT_CLICKHOUSE_URL=f"chdb://{tmp_path / 'empty'}")
    assert done.stderr.splitlines() == [
        f"llmsight: error: no llmsight tables in chdb://{tmp_path / 'other'}?database=mine; run `llmsight db migrate` "
        "or point LLMSIGHT_CLICKHOUSE_URL at your store"]


@pytest.mark.parametrize("args, env", [
    (["db", "migrate"], {"LLMSIGHT_CLICKHOUSE_URL": f"http://bob:{SECRET}@:8123/db"}),
    (["db", "migrate"], {"LLMSIGHT_CLICKHOUSE_URL": f"http://bob:{SECRET}@host/bad-db"}),
    (["db", "migrate"], {"LLMSIGHT_CLICKHOUSE_URL": f"ftp://bob:{SECRET}@host/db"}),
    (["alerts", "list", "--url", f"http://bob:{SECRET}@127.0.0.1:9/db"], {}),
    (["collector", "--source", f"kafka://bob:{SECRET}@broker/"], {}),
    (["collector", "--source", f"kafka://bob:{SECRET}@broker:9092"], {}),
], ids=["no-host", "bad-database", "bad-scheme", "unreachable", "kafka-no-topic", "kafka-no-slash"])
def test_no_message_prints_a_password(tmp_path, args, env):
    env = {"LLMSIGHT_CLICKHOUSE_URL": f"chdb://{tmp_path / 'db'}", "LLMSIGHT_COLLECTOR_HTTP_PORT": "0", **env}
    done = _run(*args, **env)
    assert done.returncode != 0
    assert SECRET not in done.stderr + done.stdout, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("llmsight: error: ")
    assert "bob:***@" in done.stderr or "bob@" in done.stderr, done.stderr


def test_masking_covers_urls_and_password_parameters():
    from llmsight.cli.app import mask_secrets

    assert mask_secrets("kafka://u:p%40ss@b1:9092,b2:9092/t and http://x:y@h:8123/db") == (
        "kafka://u:***@b1:9092,b2:9092/t and http://x:***@h:8123/db")
    assert mask_secrets("LLMSIGHT_CLICKHOUSE_URL='https://h/db?user=a&password=hunter2'") == (
        "LLMSIGHT_CLICKHOUSE_URL='https://h/db?user=a&password=***'")
    assert mask_secrets("chdb:///tmp/db?database=x") == "chdb:///tmp/db?database=x"
