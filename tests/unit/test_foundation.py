"""The package's shape: a thin SDK install, settings precedence, store URL parsing, the README."""

from __future__ import annotations

import logging
import re
from importlib.metadata import requires
from pathlib import Path

import pytest

from llmsight import config
from llmsight.cli.settings import all_settings
from llmsight.errors import ConfigError, LlmsightError, StoreLockedError
from llmsight.store import parse_url

ROOT = Path(__file__).resolve().parents[2]


def test_thin_install_pulls_only_kafka_python():
    base = [r for r in requires("llmsight") or [] if "extra ==" not in r]
    names = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in base}
    assert names == {"kafka-python"}


def test_server_extra_carries_the_heavy_stack():
    server = [r for r in requires("llmsight") or [] if 'extra == "server"' in r]
    names = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in server}
    for heavy in ("torch", "chdb", "streamlit", "evidently", "clickhouse-connect", "sentence-transformers"):
        assert heavy in names
    assert any(r.startswith("pandas<3") for r in server)


def test_setting_precedence_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("LLMSIGHT_SAMPLE_RATE", raising=False)
    assert config.resolve(config.SAMPLE_RATE) == 1.0
    monkeypatch.setenv("LLMSIGHT_SAMPLE_RATE", "0.25")
    assert config.resolve(config.SAMPLE_RATE) == 0.25
    assert config.resolve(config.SAMPLE_RATE, 0.5) == 0.5


def test_services_fail_fast_on_a_bad_value(monkeypatch):
    monkeypatch.setenv("LLMSIGHT_SAMPLE_RATE", "lots")
    with pytest.raises(ConfigError, match=r"LLMSIGHT_SAMPLE_RATE='lots' is not valid"):
        config.resolve(config.SAMPLE_RATE, strict=True)


def test_sdk_logs_once_and_falls_back(monkeypatch, caplog):
    monkeypatch.setenv("LLMSIGHT_QUEUE_SIZE", "-3")
    config._warned.discard("LLMSIGHT_QUEUE_SIZE")
    with caplog.at_level(logging.WARNING, logger="llmsight"):
        assert config.resolve(config.QUEUE_SIZE) == config.QUEUE_SIZE.default
        assert config.resolve(config.QUEUE_SIZE) == config.QUEUE_SIZE.default
    warnings = [r for r in caplog.records if "LLMSIGHT_QUEUE_SIZE" in r.getMessage()]
    assert len(warnings) == 1


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [name for name in all_settings() if f"`{name}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(
    ("url", "kind", "database", "path_end"),
    [
        ("chdb:///var/lib/llmsight", "chdb", "llmsight", "/var/lib/llmsight"),
        ("chdb:///var/lib/llmsight?database=team_a", "chdb", "team_a", "/var/lib/llmsight"),
        ("chdb://~/.llmsight/db", "chdb", "llmsight", "/.llmsight/db"),
        ("http://u:p@ch.internal:8123/obs", "http", "obs", None),
        ("https://ch.internal:8443", "http", "llmsight", None),
    ],
)
def test_store_url_forms(url, kind, database, path_end):
    parsed = parse_url(url)
    assert (parsed.kind, parsed.database) == (kind, database)
    if path_end:
        assert parsed.path is not None and parsed.path.endswith(path_end)
        assert "~" not in parsed.path


@pytest.mark.parametrize("url", ["postgres://x/y", "chdb://memory", "http:///nohost", "chdb:///x?database=a;drop"])
def test_bad_store_urls_say_what_is_accepted(url):
    with pytest.raises(ConfigError, match="LLMSIGHT_CLICKHOUSE_URL|database name"):
        parse_url(url)


def test_store_url_display_hides_the_password():
    assert "secret" not in parse_url("http://me:secret@host:8123/db").display()


def test_error_tree_has_one_root():
    assert issubclass(StoreLockedError, LlmsightError)
    assert issubclass(ConfigError, LlmsightError)


def test_readme_settings_table_is_the_generated_one():
    import subprocess
    import sys

    table = subprocess.run([sys.executable, str(ROOT / "scripts" / "settings-table")], check=True,
                           capture_output=True, text=True).stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- settings-table:start -->")[1].split("<!-- settings-table:end -->")[0].strip()
    assert block == table
    assert len(table.splitlines()) == 2 + len(all_settings())


def test_a_server_url_names_its_database_once():
    # clickhouse-connect turns a DSN's query parameters into arguments; database is passed on its own.
    parsed = parse_url("http://u:p@ch:8123?database=team_a&compress=0")
    assert parsed.database == "team_a"
    assert "database" not in parsed.dsn and "compress=0" in parsed.dsn


def test_passwords_in_urls_never_reach_an_error_message(monkeypatch):
    from llmsight.collector.source import source_from_url
    from llmsight.errors import SinkError
    from llmsight.sinks import parse_kafka_url

    with pytest.raises(SinkError) as sink:
        parse_kafka_url("kafka://user:hunter2secret@broker/")
    with pytest.raises(ConfigError) as source:
        source_from_url("nats://user:hunter2secret@broker/topic")
    monkeypatch.setenv("LLMSIGHT_SAMPLE_RATE", "http://u:hunter2secret@x/")
    with pytest.raises(ConfigError) as setting:
        config.resolve(config.SAMPLE_RATE, strict=True)
    for caught in (sink, source, setting):
        assert "hunter2secret" not in str(caught.value) and "***@" in str(caught.value)
