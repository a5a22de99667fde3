"""The Kafka security settings the Helm chart sets, against a real broker that demands them.

The broker listens with SASL_SSL and SCRAM-SHA-512, its certificate signed by a CA made here,
as in helm/llmsight/examples/values-production.yaml. The SDK sends through it and the collector
reads through it into ClickHouse (chdb), each as its own process configured only by the
LLMSIGHT_KAFKA_* variables the chart puts in the pods.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.certificates import make_certificates

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "llmsight", "s3cret-Pw"


def _kafka_dev() -> ModuleType:
    """scripts/kafka-dev as a module: the jars, the classpath and the free-port helper."""
    loader = importlib.machinery.SourceFileLoader("kafka_dev", str(ROOT / "scripts" / "kafka-dev"))
    spec = importlib.util.spec_from_loader("kafka_dev", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


class SecureBroker:
    def __init__(self, bootstrap: str, ca_file: Path, other_ca_file: Path) -> None:
        self.bootstrap = bootstrap
        self.ca_file = ca_file
        self.other_ca_file = other_ca_file

    def env(self, **overrides: str) -> dict[str, str]:
        """The variables the chart sets for SASL_SSL + SCRAM-SHA-512 + a CA bundle."""
        return {
            "LLMSIGHT_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LLMSIGHT_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LLMSIGHT_KAFKA_SASL_USERNAME": USER,
            "LLMSIGHT_KAFKA_SASL_PASSWORD": PASSWORD,
            "LLMSIGHT_KAFKA_SSL_CAFILE": str(self.ca_file),
            **overrides,
        }


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    kafka_dev = _kafka_dev()
    state = tmp_path_factory.mktemp("kafka-sasl-ssl")
    keystore, ca_file, other_ca = make_certificates(state)
    port, internal, controller = kafka_dev.free_port(), kafka_dev.free_port(), kafka_dev.free_port()
    props = state / "server.properties"
    props.write_text("\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller}",
        f"listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}",
        f"advertised.listeners=SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{internal}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=INTERNAL",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={keystore}",
        f"log.dirs={state / 'data'}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        "auto.create.topics.enable=true",
        "",
    ]))
    (state / "log4j.properties").write_text(kafka_dev.LOG4J)
    java = ["java", "-Xms128m", "-Xmx512m", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{state / 'log4j.properties'}", "-cp", kafka_dev.classpath(kafka_dev.ensure_jars())]
    # The SCRAM credential is written into the metadata log when the storage is formatted (KRaft).
    subprocess.run(java + ["kafka.tools.StorageTool", "format", "-t", uuid.uuid4().hex[:22], "-c", str(props),
                           "--add-scram", f"SCRAM-SHA-512=[name={USER},password={PASSWORD}]"],
                   check=True, stdout=subprocess.DEVNULL, timeout=120)
    log_path = state / "kafka.log"
    with open(log_path, "ab") as log:
        broker = subprocess.Popen(java + ["kafka.Kafka", str(props)], stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while b"started (kafka.server" not in log_path.read_bytes()[-20000:]:
            assert broker.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the SASL_SSL broker did not start in 120 s"
            time.sleep(0.2)
        yield SecureBroker(f"127.0.0.1:{port}", ca_file, other_ca)
    finally:
        os.killpg(broker.pid, signal.SIGKILL)
        broker.wait(timeout=30)


SEND = """
import json, sys
import llmsight

llmsight.init(sink=sys.argv[1], service="kafka-security")

@llmsight.monitor(name="echo", model="test-model")
def echo(text):
    return text.upper()

for i in range(int(sys.argv[2])):
    echo(f"question {i}")
llmsight.flush(20)
print(json.dumps(llmsight.stats()))
"""

COUNT = """
import sys
from llmsight import store
client = store.connect(sys.argv[1])
print(client.query("SELECT count() FROM events FINAL WHERE service = 'kafka-security'").result_rows[0][0])
"""


def _run(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LLMSIGHT_SPILL_DIR": env.pop("SPILL", ""), **env}
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT)


def test_sdk_and_collector_go_through_sasl_ssl_with_the_chart_settings(
        secure_broker: SecureBroker, tmp_path: Path) -> None:
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    sink = f"kafka://{secure_broker.bootstrap}/{topic}"
    sent = _run([sys.executable, "-c", SEND, sink, "25"], {**secure_broker.env(), "SPILL": str(tmp_path / "spill")})
    assert sent.returncode == 0, sent.stderr[-3000:]
    assert json.loads(sent.stdout.strip().splitlines()[-1]) == {"sent": 25, "dropped": 0, "spilled": 0, "failed": 0}

    store_url = f"chdb://{tmp_path / 'db'}"
    llmsight = str(Path(sys.executable).with_name("llmsight"))
    collected = _run([llmsight, "collector", "--source", sink, "--until-idle"],
                     {**secure_broker.env(), "LLMSIGHT_CLICKHOUSE_URL": store_url,
                      "LLMSIGHT_COLLECTOR_HTTP_PORT": "0"})
    assert collected.returncode == 0, collected.stderr[-3000:]
    counted = _run([sys.executable, "-c", COUNT, store_url], {})
    assert counted.returncode == 0, counted.stderr[-3000:]
    assert counted.stdout.strip() == "25"


@pytest.mark.parametrize("wrong", ["password", "ca"])
def test_a_wrong_password_or_ca_is_refused(secure_broker: SecureBroker, wrong: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    from llmsight import config

    overrides = ({"LLMSIGHT_KAFKA_SASL_PASSWORD": "not-it"} if wrong == "password"
                 else {"LLMSIGHT_KAFKA_SSL_CAFILE": str(secure_broker.other_ca_file)})
    for name, value in secure_broker.env(**overrides).items():
        monkeypatch.setenv(name, value)
    options = config.kafka_security_options(strict=True)
    with pytest.raises(KafkaError):
        consumer = KafkaConsumer(bootstrap_servers=secure_broker.bootstrap, bootstrap_timeout_ms=4000,
                                 request_timeout_ms=5000, **options)
        try:
            consumer.topics()
        finally:
            consumer.close()
    # The same client with the right settings is let in.
    for name, value in secure_broker.env().items():
        monkeypatch.setenv(name, value)
    consumer = KafkaConsumer(bootstrap_servers=secure_broker.bootstrap, bootstrap_timeout_ms=8000,
                             **config.kafka_security_options(strict=True))
    try:
        assert isinstance(consumer.topics(), set)
    finally:
        consumer.close()
