"""``llmsight store serve`` on real chdb, through clickhouse-connect's unchanged HTTP client.

The server runs in a subprocess (this test process may hold a chdb path of its own, and chdb allows
one data directory per process); the clients are the ones every llmsight service gets from
``store.connect("http://...")``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from llmsight import store
from llmsight.errors import StoreLockedError
from llmsight.store import EVENT_COLUMNS, event_row

SERVE = [sys.executable, "-m", "llmsight.cli.app", "store", "serve"]
DAY = datetime.now(timezone.utc).date() - timedelta(days=1)


class Server:
    def __init__(self, proc: subprocess.Popen[str], url: str, path: Path) -> None:
        self.proc, self.url, self.path = proc, url, path

    def client(self, database: str | None = None) -> object:
        return store.connect(f"{self.url}/{database or 't_' + uuid.uuid4().hex[:12]}")

    def stop(self) -> tuple[int, float, str]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, time.monotonic() - started, out


def start_server(path: Path, *args: str) -> Server:
    proc = subprocess.Popen([*SERVE, "--path", str(path), "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("store: serving"):
            address = line.split(" on ", 1)[1].split()[0]
            return Server(proc, address, path)
    proc.kill()
    raise AssertionError("the store server did not start:\n" + "".join(seen))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("served"))
    yield running
    code, took, out = running.stop()
    assert code == 0, out
    assert took < 10, f"SIGTERM took {took:.1f} s"
    assert "store: stopped" in out


def _event(i: int) -> dict:
    return {
        "event_id": str(uuid.UUID(int=i + 1)), "trace_id": f"tr{i}", "parent_id": None,
        "ts": datetime.combine(DAY, datetime.min.time(), timezone.utc) + timedelta(seconds=i), "service": "svc",
        "environment": "prod", "name": "answer", "model": "m", "prompt_version": "v1",
        "input": f"question {i}", "output": "answer", "error": None, "error_type": None,
        "latency_ms": 12.5, "ttft_ms": None, "tokens_in": 3, "tokens_out": 5, "cost_usd": 0.001,
        "user_id": "u", "session_id": "s", "tags": {"k": "v"}, "metadata": {"a": 1}, "truncated": False,
    }


def test_migrate_a_fresh_database_through_the_server(server: Server) -> None:
    client = server.client()
    applied = store.migrate(client)
    assert applied == [m.name for m in store.load_migrations()]  # every migration, the first time
    tables = {r[0] for r in client.query("SHOW TABLES").result_rows}
    assert {"events", "feedback", "metrics", "alerts", "schema_migrations"} <= tables
    assert store.migrate(client) == []


def test_inserts_with_a_deduplication_token_land_once(server: Server) -> None:
    client = server.client()
    store.migrate(client)
    rows = [event_row(_event(i), "test") for i in range(200)]
    token = {"insert_deduplication_token": "segment-0-200"}
    client.insert("events", rows, column_names=EVENT_COLUMNS, settings=token)
    client.insert("events", rows, column_names=EVENT_COLUMNS, settings=token)
    assert client.query("SELECT count() FROM events").result_rows[0][0] == 200
    # The token is the request's only: the next insert without one lands again.
    client.insert("events", rows[:10], column_names=EVENT_COLUMNS)
    assert client.query("SELECT count() FROM events").result_rows[0][0] == 210
    # The collector's raw JSON insert (the statement and the data in one body), with a token too.
    payload = b'[["' + str(uuid.UUID(int=10_001)).encode() + b'"],["tr"],["' + \
        (DAY.isoformat() + ' 10:00:00').encode() + b'"],["svc"],["answer"]]'
    settings = {"insert_deduplication_token": "json-1", "date_time_input_format": "best_effort"}
    for _ in range(2):
        client.raw_insert("events", ["event_id", "trace_id", "ts", "service", "name"], payload, settings=settings,
                          fmt="JSONCompactColumns")
    assert client.query("SELECT count() FROM events WHERE trace_id = 'tr'").result_rows[0][0] == 1


def test_server_side_parameters(server: Server) -> None:
    client = server.client()
    when = datetime(2024, 5, 6, 7, 8, 9, 123000)
    result = client.query(
        "SELECT {when:DateTime64(3)} AS w, {names:Array(String)} AS n, {n:UInt32} + 1 AS k, {s:String} AS s",
        parameters={"when": when, "names": ["a", "b'c", "d\\e"], "n": 41, "s": "tab\there"})
    assert result.result_rows == [(when, ["a", "b'c", "d\\e"], 42, "tab\there")]
    # A parameter over 4 KiB: clickhouse-connect switches to a multipart/form-data body.
    many = [f"{i:064x}" for i in range(300)]
    found = client.query("SELECT length({many:Array(String)}), {many:Array(String)}[300]", parameters={"many": many})
    assert found.result_rows == [(300, many[-1])]
    # A DateTime64 parameter in a WHERE clause on stored rows.
    store.migrate(client)
    client.insert("events", [event_row(_event(i), "test") for i in range(5)], column_names=EVENT_COLUMNS)
    start = datetime.combine(DAY, datetime.min.time(), timezone.utc)
    counted = client.query("SELECT count() FROM events WHERE ts >= {a:DateTime64(3, 'UTC')} "
                           "AND ts < {b:DateTime64(3, 'UTC')}",
                           parameters={"a": start + timedelta(seconds=1), "b": start + timedelta(seconds=3)})
    assert counted.result_rows[0][0] == 2


def test_arrow_and_dataframes(server: Server) -> None:
    client = server.client()
    table = client.query_arrow("SELECT number AS n, toString(number) AS s FROM numbers(1000)")
    assert table.num_rows == 1000 and table.column("s")[999].as_py() == "999"
    frame = client.query_df("SELECT number AS n, number * 2 AS m FROM numbers(10)")
    assert list(frame["m"]) == [2 * i for i in range(10)]
    assert client.command("SELECT 41 + 1") == 42


def test_errors_are_clickhouse_errors(server: Server) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    client = server.client()
    with pytest.raises(DatabaseError) as missing:
        client.query("SELECT * FROM no_such_table")
    assert missing.value.code == 60
    assert "UNKNOWN_TABLE" in str(missing.value)
    with pytest.raises(DatabaseError) as syntax:
        client.command("SELEC 1")
    assert syntax.value.code == 62
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.query("SELECT 1", settings={"no_such_setting_at_all": 1})
    # A failed request leaves the server serving.
    assert client.command("SELECT 1") == 1


def test_the_data_directory_is_locked_by_the_server(server: Server) -> None:
    with pytest.raises(StoreLockedError, match=f"pid {server.proc.pid}"):
        store.connect(f"chdb://{server.path}")


WORKER = textwrap.dedent("""
    import sys, uuid
    from llmsight import store
    url, me, batches = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = store.connect(url)
    for b in range(batches):
        rows = [[me, b, i, f"w{me}-{b}-{i}"] for i in range(500)]
        client.insert("work", rows, column_names=["worker", "batch", "i", "s"],
                      settings={"insert_deduplication_token": f"{me}-{b}"})
        seen = client.query("SELECT count() FROM work WHERE worker = {w:UInt8}", parameters={"w": me}).result_rows[0][0]
        assert seen == (b + 1) * 500, (me, b, seen)
        client.query("SELECT worker, count(), uniqExact(s) FROM work GROUP BY worker").result_rows
    print("done", me)
""")


def test_two_client_processes_write_and_read_at_once(server: Server) -> None:
    database = "t_" + uuid.uuid4().hex[:12]
    client = server.client(database)
    client.command("CREATE TABLE work (worker UInt8, batch UInt32, i UInt32, s String) ENGINE = MergeTree "
                   "ORDER BY (worker, batch, i) SETTINGS non_replicated_deduplication_window = 1000")
    url = f"{server.url}/{database}"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(w), "20"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for w in (1, 2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = client.query("SELECT worker, count() FROM work GROUP BY worker ORDER BY worker").result_rows
    assert rows == [(1, 10_000), (2, 10_000)]


def test_a_password_is_required_off_loopback_and_checked(tmp_path: Path) -> None:
    refused = subprocess.run([*SERVE, "--path", str(tmp_path / "a"), "--host", "0.0.0.0", "--port", "0"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0" in refused.stderr and "--password" in refused.stderr
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())

    secret = "s3cret-" + uuid.uuid4().hex[:8]
    (tmp_path / "pw").write_text(secret + "\n")
    guarded = start_server(tmp_path / "b", "--password-file", str(tmp_path / "pw"))
    try:
        from clickhouse_connect.driver.exceptions import DatabaseError

        from llmsight.errors import StoreError

        host = guarded.url.split("://", 1)[1]
        client = store.connect(f"http://default:{secret}@{host}/guarded")
        assert client.command("SELECT 1") == 1
        with pytest.raises(StoreError) as wrong:
            store.connect(f"http://default:wrong@{host}/guarded")
        assert "516" in str(wrong.value) or "Authentication failed" in str(wrong.value)
        with pytest.raises(StoreError):
            store.connect(f"http://{host}/guarded")  # no password at all
        assert isinstance(wrong.value.__cause__, DatabaseError)
    finally:
        code, _, out = guarded.stop()
    assert code == 0, out
    assert secret not in out


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", False])
@pytest.mark.parametrize("columns", [9, 10, 32])  # Native data starting with a tab, a newline, a space
def test_inserts_in_every_compression_and_width(server: Server, compress: str | bool, columns: int) -> None:
    import clickhouse_connect

    database = "t_" + uuid.uuid4().hex[:12]
    server.client(database)  # creates the database
    client = clickhouse_connect.get_client(dsn=f"{server.url}/{database}", compress=compress)
    names = [f"c{i}" for i in range(columns)]
    client.command(f"CREATE TABLE w ({', '.join(n + ' String' for n in names)}) ENGINE = MergeTree ORDER BY c0")
    rows = [[f"{r}-{c}\t\n'x" for c in range(columns)] for r in range(3000)]
    client.insert("w", rows, column_names=names)
    assert client.query("SELECT count(), max(c0) FROM w").result_rows == [(3000, "999-0\t\n'x")]
    # raw_insert's compression says how the caller compressed the block.
    tsv = "\n".join("\t".join(f"raw{r}" for _ in names) for r in range(5)).encode()
    for how in ("lz4", "zstd", "gzip", "deflate", False):
        client.raw_insert("w", names, _compressed(tsv, how), fmt="TSV", compression=how or None)
    assert client.command("SELECT count() FROM w WHERE c0 LIKE 'raw%'") == 25


def _compressed(data: bytes, how: str | bool) -> bytes:
    import gzip
    import zlib

    import lz4.frame
    from backports import zstd

    return {"lz4": lz4.frame.compress, "zstd": zstd.compress, "gzip": gzip.compress, "deflate": zlib.compress,
            False: lambda d: d}[how](data)


def test_what_the_shared_session_cannot_do_is_refused(server: Server) -> None:
    import urllib.request
    from urllib.error import HTTPError

    from clickhouse_connect.driver.exceptions import DatabaseError

    client = server.client()
    for statement in ("SET max_threads = 1", "USE system", "CREATE TEMPORARY TABLE tmp (a UInt8)"):
        with pytest.raises(DatabaseError, match="llmsight store server"):
            client.command(statement)
    # GET is read-only, as on ClickHouse.
    with pytest.raises(HTTPError) as get:
        urllib.request.urlopen(f"{server.url}/?query=CREATE%20DATABASE%20nope_get", timeout=30)
    assert get.value.code == 403 and get.value.headers["X-ClickHouse-Exception-Code"] == "164"
    with urllib.request.urlopen(f"{server.url}/?query=SELECT%2040%2B2", timeout=30) as ok:
        assert ok.read() == b"42\n"
    # A web page cannot drive it: browsers add Origin to cross-site requests.
    request = urllib.request.Request(f"{server.url}/", data=b"SELECT 1", headers={"Origin": "http://evil.example"})
    with pytest.raises(HTTPError) as cross:
        urllib.request.urlopen(request, timeout=30)
    assert cross.value.code == 403
    with urllib.request.urlopen(f"{server.url}/ping", timeout=30) as ping:
        assert ping.read() == b"Ok.\n"


def test_sigterm_during_a_long_query_stops_within_seconds(tmp_path: Path) -> None:
    running = start_server(tmp_path / "s")
    url = running.url
    slow = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from llmsight import store
        client = store.connect({url + '/slow'!r})
        client.query("SELECT count() FROM numbers(100000000000) WHERE cityHash64(number) % 7 = 1")
    """)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)  # the query runs
    code, took, out = running.stop()
    slow.kill()
    slow.communicate()
    assert took < 12, f"SIGTERM took {took:.1f} s: {out}"
    assert code in (0, 1), out
