"""``store.connect`` on a ClickHouse server: CREATE DATABASE only when the database is missing, since ClickHouse
checks that grant even for ``IF NOT EXISTS`` and the collector and analyzers are not given it (a recording
stand-in for clickhouse-connect's client: the server is external)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import clickhouse_connect
import pytest

from llmsight import store


class _Recorder:
    def __init__(self, existing: set[str], log: list[tuple[str, str]]) -> None:
        self.existing, self.log = existing, log

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        self.log.append(("query", sql))
        assert parameters is not None and "system.databases" in sql
        return SimpleNamespace(result_rows=[[int(parameters["name"] in self.existing)]])

    def command(self, sql: str) -> None:
        self.log.append(("command", sql))


def _connect(monkeypatch: pytest.MonkeyPatch, existing: set[str]) -> list[tuple[str, str]]:
    log: list[tuple[str, str]] = []

    def get_client(*, dsn: str, database: str) -> _Recorder:
        log.append(("client", database))
        return _Recorder(existing, log)

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    store.connect("http://writer:pw@ch.example:8123/obs_prod")
    return log


def test_an_existing_database_is_not_created_again(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _connect(monkeypatch, {"default", "obs_prod"})
    assert not [entry for entry in log if entry[0] == "command"]
    assert log[-1] == ("client", "obs_prod")


def test_a_missing_database_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _connect(monkeypatch, {"default"})
    assert ("command", "CREATE DATABASE IF NOT EXISTS `obs_prod`") in log
    assert log[-1] == ("client", "obs_prod")
