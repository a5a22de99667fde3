"""Least privilege (issue 15 item 21): ``llmsight dashboard`` never creates a database or runs a migration, so
a ClickHouse user without CREATE/ALTER grants is enough for it. On a store without the database, or one a
migration behind, it stops with one line saying to run ``llmsight db migrate``, and leaves the store as it was.

Each store is a chdb path of its own, opened only by short subprocesses (chdb allows one process per path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

LLMSIGHT = str(Path(sys.executable).with_name("llmsight"))
READ = """
import json, sys
import clickhouse_connect
from llmsight import store
target = store.parse_url(sys.argv[1])
admin = clickhouse_connect.get_client(dsn=target.dsn)
databases = sorted(r[0] for r in admin.query("SHOW DATABASES").result_rows)
versions = []
if target.database in databases:
    versions = sorted(r[0] for r in admin.query(f"SELECT version FROM `{target.database}`.schema_migrations").result_rows)
print(json.dumps({"databases": databases, "versions": versions}))
"""
BEHIND = """
import sys
from llmsight import store
client = store.connect(sys.argv[1])
store.migrate(client)
client.command("ALTER TABLE schema_migrations DELETE WHERE version = (SELECT max(version) FROM schema_migrations) "
               "SETTINGS mutations_sync = 2")
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "LLMSIGHT_EXPORT_DIR": str(tmp_path / "exports")}


def _dashboard(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Port 1 is never reached: the store check comes before the server binds.
    return subprocess.run([LLMSIGHT, "dashboard", "--port", "1", "--url", url], env=_env(tmp_path), cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)


def _read(url: str, tmp_path: Path) -> dict[str, list]:
    done = subprocess.run([sys.executable, "-c", READ, url], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=180, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_store_without_the_database_stops_the_start_with_one_line_and_creates_nothing(tmp_path):
    url = f"chdb://{tmp_path / 'db'}?database=llmsight_dash"
    done = _dashboard(url, tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1] == (f"llmsight: error: no llmsight tables in {url}; run `llmsight db migrate` or point "
                         "LLMSIGHT_CLICKHOUSE_URL at your store"), done.stderr
    assert "Traceback" not in done.stderr
    assert "llmsight_dash" not in _read(url, tmp_path)["databases"]  # before: created and migrated


def test_a_store_a_migration_behind_is_not_migrated_by_the_dashboard(tmp_path):
    from llmsight.store.migrate import load_migrations

    url = f"chdb://{tmp_path / 'db'}?database=llmsight_dash"
    subprocess.run([sys.executable, "-c", BEHIND, url], env=_env(tmp_path), check=True, timeout=180)
    shipped = load_migrations()
    before = _read(url, tmp_path)["versions"]
    assert before == [m.version for m in shipped[:-1]]
    done = _dashboard(url, tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"llmsight: error: the store {url} lacks migration(s) {shipped[-1].name}; run `llmsight db migrate` "
        "(the dashboard never changes the schema)"), done.stderr
    assert _read(url, tmp_path)["versions"] == before
