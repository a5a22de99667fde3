"""Shared fixtures. Tests are marked by folder: unit, integration, e2e.

chdb allows one data directory per process, so the whole test process shares one chdb path and
each test gets its own ClickHouse database on it (the same isolation works on a server URL:
set LLMSIGHT_TEST_CLICKHOUSE_URL to run the store tests against one).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for layer in ("unit", "integration", "e2e"):
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The store URL shared by this test process (chdb in a temp dir unless overridden)."""
    return os.environ.get("LLMSIGHT_TEST_CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def store_database() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store_client(store_url: str, store_database: str):
    """A migrated store client on a fresh database of its own."""
    from llmsight import store

    client = store.connect(store_url, store_database)
    store.migrate(client)
    yield client
    try:
        client.command(f"DROP DATABASE IF EXISTS `{store_database}`")
    except Exception:
        pass


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the labelled public data sets (present in a checkout with shared/ beside it)."""
    if not SHARED_DATA.is_dir():
        raise RuntimeError(f"{SHARED_DATA} is missing: tests need ../shared/data beside the checkout")
    return SHARED_DATA
from tests.kafka import kafka_broker  # noqa: E402,F401  (the session Kafka broker fixture)


@pytest.fixture
def streamlit_on_localhost():
    """Streamlit's server.address set to 127.0.0.1 for one test (AppTest leaves it unset: every
    interface, which asks for a login), then put back."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)
