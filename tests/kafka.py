"""The ``kafka_broker`` fixture: a real Apache Kafka broker started with scripts/kafka-dev.

One broker serves the whole test session; tests make their own topics. ``stop()`` and
``start()`` restart it on the same port and data, for outage tests.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

KAFKA_DEV = Path(__file__).resolve().parents[1] / "scripts" / "kafka-dev"


class KafkaBroker:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.bootstrap = ""

    def _run(self, *args: str) -> str:
        result = subprocess.run([sys.executable, str(KAFKA_DEV), *args, "--dir", str(self.state)],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-dev {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def start(self) -> str:
        self.bootstrap = self._run("start").splitlines()[-1]
        return self.bootstrap

    def stop(self) -> None:
        self._run("stop")

    def create_topic(self, name: str | None = None, partitions: int = 1) -> str:
        from kafka.admin import KafkaAdminClient, NewTopic

        topic = name or f"t-{uuid.uuid4().hex[:10]}"
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="llmsight-tests")
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            admin.close()
        deadline = time.monotonic() + 30
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            while time.monotonic() < deadline:
                parts = consumer.partitions_for_topic(topic)
                if parts and len(parts) == partitions:
                    return topic
                time.sleep(0.2)
        finally:
            consumer.close()
        raise RuntimeError(f"topic {topic} did not get {partitions} partitions in 30 s")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()
