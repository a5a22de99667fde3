"""The roles of an analyzer replica when analysis is shared through Kafka: worker and coordinator.

Set ``LLMSIGHT_ANALYSIS_QUEUE=kafka://host:9092/llmsight.analysis`` and run ``llmsight analyzers`` as
many times as needed (one Deployment with N replicas). Each replica is a **worker** and a
**coordinator candidate**:

* **Workers** are one consumer group (``LLMSIGHT_ANALYSIS_GROUP``) on the work topic. A worker takes
  one work unit at a time (some segments of one window), analyses it, writes its metric rows and
  then its row in ``analysis_units``, and only then commits the unit's offset. A worker that dies
  mid-unit leaves the offset uncommitted: the unit goes to another worker after the session
  timeout and is redone; the rows it writes are the same rows, which replace the first ones.
  Partitions are handed out round-robin and units are placed round-robin on partitions, so the
  units of a window split evenly whenever the replica count divides the partition count (24 by default).
* **The coordinator** is whichever replica Kafka assigns partition 0 of the coordination topic
  (``TOPIC.coord``, one partition) in the group ``GROUP.coord``: no locks or elections of our own.
  It plans each due window (1-minute windows, hourly and daily rollups) into units and publishes
  them, a window once the one before it is done (a window's drift evidence follows from the rows of
  the window before it; an hourly or daily window also waits for its minute windows), a minute
  window's texts first, by embedding units (:mod:`llmsight.scheduler.embedding`), so that each is
  embedded once; then, strictly in window order, it runs the alert rules on each window whose units
  are all done; it republishes the missing units of a window left unfinished for
  ``LLMSIGHT_ANALYSIS_UNIT_TIMEOUT_S``, writes the lag rows and evaluates the lag rule every window,
  and runs the weekly export and the online evaluators (:mod:`llmsight.scheduler.evaluation`). When the coordinator stops (or is evicted after the session timeout),
  Kafka gives partition 0 to another replica, which resumes from the progress tables.

The lag (how far analysis is behind, :func:`llmsight.store.queries.analysis_lag`) is read from the
store by every replica and served as Prometheus gauges on ``/metrics`` (for an HPA), written as
metric rows by the coordinator (the default rule ``analysis-lag`` alerts on it) and shown by the
dashboard as a banner when it is more than two windows.

Embedded mode (``llmsight up``, the demo, no queue) keeps everything in one process: see
:mod:`llmsight.scheduler.service`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from llmsight.analyzers.window_metrics import WindowAnalyzer
from llmsight.analyzers.windows import (
    BASE_GRANULARITY,
    ROLLUPS,
    Window,
    due_windows,
    read_metrics,
    segments_in,
    write_metrics,
)
from llmsight.scheduler.embedding import embed_shard
from llmsight.scheduler.progress import (
    EVALUATED,
    LAG_METRICS,
    PLANNED,
    Unfinished,
    WorkUnit,
    cut,
    embed_units,
    lag_rows,
    last_planned,
    plan_id,
    record_lag,
    record_unit,
    record_window,
    shards_done,
    unfinished,
)

log = logging.getLogger("llmsight.scheduler.roles")

COORDINATION_PARTITION = 0
EMBED_SHARDS = 24  # embedding units of a minute window at most (the work topic's default partitions)


@dataclass(frozen=True)
class QueueSettings:
    bootstrap: tuple[str, ...]
    topic: str
    group: str
    partitions: int = 24
    unit_segments: int = 4
    session_s: float = 15.0
    unit_timeout_s: float = 300.0

    @property
    def coordination_topic(self) -> str:
        return f"{self.topic}.coord"

    @property
    def coordination_group(self) -> str:
        return f"{self.group}.coord"

    @classmethod
    def from_env(cls, url: str | None = None) -> QueueSettings | None:
        """The queue settings, or None when analysis runs in one process (no ``LLMSIGHT_ANALYSIS_QUEUE``)."""
        from llmsight import config
        from llmsight.errors import ConfigError
        from llmsight.scheduler import settings
        from llmsight.sinks import parse_kafka_url

        url = url if url is not None else config.resolve(settings.ANALYSIS_QUEUE, strict=True)
        if not url:
            return None
        try:
            bootstrap, topic = parse_kafka_url(url)
        except Exception as exc:
            raise ConfigError(f"LLMSIGHT_ANALYSIS_QUEUE={url!r} is not valid: {exc}") from None
        session_s = config.resolve(settings.ANALYSIS_SESSION_TIMEOUT_S, strict=True)
        if not 6 <= session_s <= 1800:
            raise ConfigError(f"LLMSIGHT_ANALYSIS_SESSION_TIMEOUT_S={session_s} is not valid: Kafka brokers "
                              "accept 6 to 1800 s by default")
        return cls(tuple(bootstrap), topic, config.resolve(settings.ANALYSIS_GROUP, strict=True),
                   config.resolve(settings.ANALYSIS_PARTITIONS, strict=True),
                   config.resolve(settings.ANALYSIS_UNIT_SEGMENTS, strict=True), session_s,
                   config.resolve(settings.ANALYSIS_UNIT_TIMEOUT_S, strict=True))


def ensure_topics(queue: QueueSettings) -> None:
    """Create the work topic (``partitions``) and the coordination topic (one partition) if missing."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from llmsight import config

    admin = KafkaAdminClient(bootstrap_servers=list(queue.bootstrap), client_id="llmsight-analyzers",
                             **config.kafka_security_options(strict=True))
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(queue.topic, num_partitions=queue.partitions, replication_factor=-1),
                  NewTopic(queue.coordination_topic, num_partitions=1, replication_factor=-1)]
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            try:
                admin.create_topics(missing)
                log.info("analyzers: created topic(s) %s", ", ".join(t.name for t in missing))
            except TopicAlreadyExistsError:  # another replica was quicker
                pass
    finally:
        admin.close()


# -- one membership of a consumer group ---------------------------------------------------------------

class GroupMember:
    """A kafka-python consumer subscribed to one topic as a member of a group.

    It reads the topic's partitions before it joins (without them the first join assigns nothing and
    kafka-python 3.0.12 sometimes never finishes the second), and it replaces itself with a new
    consumer when a join has not finished within the session timeout (the same defect at a later
    rebalance; see the collector's Kafka source). ``assigned`` is what the last finished join gave.
    Only the thread that polls may call it.
    """

    def __init__(self, queue: QueueSettings, topic: str, group: str, *, name: str, poll_interval_s: float) -> None:
        from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor

        from llmsight import config

        session_ms = int(queue.session_s * 1000)
        self.topic = topic
        self.name = name
        self.session_s = queue.session_s
        self.options: dict[str, Any] = {
            "bootstrap_servers": list(queue.bootstrap), "group_id": group, "client_id": name,
            "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "session_timeout_ms": session_ms, "heartbeat_interval_ms": max(500, min(3000, session_ms // 3)),
            "max_poll_interval_ms": int(max(poll_interval_s, queue.session_s) * 1000),
            "partition_assignment_strategy": [RoundRobinPartitionAssignor],
            "max_poll_records": 1, **config.kafka_security_options(strict=True),
        }
        self.assigned: frozenset[Any] = frozenset()
        self.joining_since: float | None = time.monotonic()
        self.consumer = self._join()

    def _join(self) -> Any:
        from kafka import ConsumerRebalanceListener, KafkaConsumer

        member = self

        class Listener(ConsumerRebalanceListener):  # runs inside poll(): only flags change here
            def on_partitions_revoked(self, revoked: Any) -> None:
                member.joining_since = time.monotonic()

            def on_partitions_assigned(self, assigned: Any) -> None:
                member.assigned = frozenset(assigned)
                member.joining_since = None

        consumer = KafkaConsumer(**self.options)
        consumer.partitions_for_topic(self.topic)
        consumer.subscribe([self.topic], listener=Listener())
        return consumer

    def poll(self, timeout_s: float) -> list[Any]:
        since = self.joining_since
        if since is not None and time.monotonic() - since > 2 * self.session_s:
            log.warning("analyzers: %s: the join of %s has not finished in %.0f s; joining again",
                        self.name, self.topic, time.monotonic() - since)
            self.close()
            self.assigned = frozenset()
            self.joining_since = time.monotonic()
            self.consumer = self._join()
        polled = self.consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=1)
        return [record for records in polled.values() for record in records]

    def commit(self, record: Any) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        self.consumer.commit({TopicPartition(record.topic, record.partition): OffsetAndMetadata(record.offset + 1, "", -1)})

    def owns(self, partition: int) -> bool:
        return any(tp.partition == partition for tp in self.assigned) and self.joining_since is None

    def close(self) -> None:
        try:
            self.consumer.close(autocommit=False, timeout_ms=2000)
        except Exception:
            log.debug("analyzers: closing a consumer failed", exc_info=True)


# -- the worker ----------------------------------------------------------------------------------------

class Worker:
    """Takes work units from the work topic and analyses them, one at a time."""

    def __init__(self, client: Any, analyzer: WindowAnalyzer, queue: QueueSettings, name: str) -> None:
        self.client = client
        self.analyzer = analyzer
        self.queue = queue
        self.name = name
        self.member: GroupMember | None = None
        self.units_done = 0
        self.failures = 0
        self.seconds = 0.0
        self.ready = False
        self._stopping = threading.Event()

    def run(self) -> None:
        # The models load before the worker joins: its first unit is not slowed by them, and a replica
        # that cannot load them never takes a unit.
        self.analyzer.warm_up()
        self.ready = True
        self.member = GroupMember(self.queue, self.queue.topic, self.queue.group, name=f"{self.name}-worker",
                                  poll_interval_s=max(600.0, self.queue.unit_timeout_s))
        try:
            while not self._stopping.is_set():
                self.step()
        finally:
            self.member.close()

    def step(self, timeout_s: float = 1.0) -> int:
        """Poll once and analyse what came (at most one unit); returns the units done."""
        assert self.member is not None
        done = 0
        for record in self.member.poll(timeout_s):
            try:
                unit = WorkUnit.decode(record.value)
            except ValueError as exc:
                log.error("analyzers: skipping message %s/%d@%d: %s", record.topic, record.partition,
                          record.offset, exc)
                self.member.commit(record)
                continue
            if self.handle(unit):
                self.member.commit(record)
                done += 1
        return done

    def handle(self, unit: WorkUnit) -> bool:
        """Analyse one unit and record it; False when stopped midway (nothing written, the unit is redone)."""
        started = time.perf_counter()
        try:
            if unit.embeds:
                texts = embed_shard(self.analyzer, unit.window, unit.segment_dicts(), unit.index, unit.shards)
            else:
                rows = self.analyzer.analyze(unit.window, unit.segment_dicts())
        except Exception:
            # Reading the store failed: leave the unit uncommitted; it is retried after a pause.
            self.failures += 1
            log.exception("analyzers: unit %s failed; retrying", unit.unit_id)
            self._stopping.wait(5.0)
            raise
        if self._stopping.is_set():
            return False
        if unit.embeds:
            record_unit(self.client, unit, texts, self.name, time.perf_counter() - started)
            log.info("analyzers: unit %s: %d texts of shard %d/%d in %.1f s", unit.unit_id, texts, unit.index,
                     unit.shards, time.perf_counter() - started)
            return True
        write_metrics(self.client, rows)
        seconds = time.perf_counter() - started
        record_unit(self.client, unit, len(rows), self.name, seconds)
        self.units_done += 1
        self.seconds += seconds
        log.info("analyzers: unit %s (%d segments): %d rows in %.1f s", unit.unit_id, len(unit.segments),
                 len(rows), seconds)
        return True

    def stop(self) -> None:
        self._stopping.set()
        self.analyzer.stop()


# -- the coordinator -------------------------------------------------------------------------------------

class Coordinator:
    """The once-only jobs, on the replica that owns partition 0 of the coordination topic."""

    def __init__(self, client: Any, queue: QueueSettings, *, window_s: int, lag_s: float, catchup: int,
                 rules: list[Any], notifier: Any, name: str, weekly_export: bool = True,
                 evaluators: list[Any] | None = None, embed_phase: bool = True) -> None:
        from llmsight.alerts.engine import AlertEngine
        from llmsight.scheduler.evaluation import EvaluatorJob, is_eval_rule

        self.client = client
        self.queue = queue
        self.window_s, self.lag_s, self.catchup = window_s, lag_s, catchup
        self.alerts = AlertEngine(client, [r for r in rules if r.metric not in LAG_METRICS and not is_eval_rule(r)],
                                  notifier)
        self.lag_alerts = AlertEngine(client, [r for r in rules if r.metric in LAG_METRICS], notifier)
        # The online evaluators run on the coordinator only (each sampled call is judged once); read now
        # so that a bad evaluators file fails at start-up on every replica.
        self.evaluators = EvaluatorJob.from_settings(client, rules, notifier, window_s=window_s, lag_s=lag_s,
                                                     catchup=catchup, evaluators=evaluators)
        self.name = name
        self.weekly_export = weekly_export
        self.embed_phase = embed_phase
        self.leading = False
        self.member: GroupMember | None = None
        self.windows_evaluated = 0
        self._producer: Any = None
        self._export: Any = None
        self._last: dict[str, datetime | None] = {}
        self._held: dict[str, datetime] = {}  # the window each granularity holds back (logged once)
        self._lag_window: Window | None = None
        # Minute windows whose embedding units are out: (granularity, start) -> (analysis units, shards, since).
        self._embedding: dict[tuple[str, datetime], tuple[list[WorkUnit], int, float]] = {}
        self._resuming = False
        self._stopping = threading.Event()

    def run(self, tick_s: float = 1.0) -> None:
        self.member = GroupMember(self.queue, self.queue.coordination_topic, self.queue.coordination_group,
                                  name=f"{self.name}-coordinator", poll_interval_s=600.0)
        try:
            while not self._stopping.is_set():
                self.member.poll(tick_s)  # keeps the membership; assignments change in here
                leading = self.member.owns(COORDINATION_PARTITION)
                if leading != self.leading:
                    self._hand_over(leading)
                if leading:
                    try:
                        self.step()
                    except Exception:
                        log.exception("analyzers: coordinator step failed; it runs again next tick")
                        self._stopping.wait(min(5.0, self.window_s))
        finally:
            if self.leading:
                self._hand_over(False)
            self.member.close()

    def _hand_over(self, leading: bool) -> None:
        self.leading = leading
        self._last = {}  # read again from the store: another coordinator may have planned since
        self._held = {}
        self._embedding = {}
        self._resuming = leading
        log.info("analyzers: %s %s the coordinator", self.name, "is now" if leading else "is no longer")
        if leading and (self.weekly_export or self.evaluators is not None):
            from apscheduler.schedulers.background import BackgroundScheduler

            from llmsight.review.export import schedule_weekly_export

            self._export = BackgroundScheduler(timezone=timezone.utc)
            if self.weekly_export:
                schedule_weekly_export(self._export, client=self.client)
            if self.evaluators is not None:
                self.evaluators.runner.resume()  # from the store: another coordinator may have run since
                self.evaluators.schedule(self._export, max(5, min(30, self.window_s // 2)))
            self._export.start()
        elif not leading and self._export is not None:
            if self.evaluators is not None:
                self.evaluators.runner.pause()  # a run under way stops at its next evaluator or window
            self._export.shutdown(wait=False)
            self._export = None

    @property
    def producer(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            from llmsight import config

            self._producer = KafkaProducer(bootstrap_servers=list(self.queue.bootstrap), acks="all",
                                           client_id=f"{self.name}-coordinator", linger_ms=5,
                                           **config.kafka_security_options(strict=True))
        return self._producer

    def step(self, now: datetime | None = None) -> None:
        """Plan what is due, evaluate what is done, republish what is stuck, and write the lag."""
        now = now or datetime.now(timezone.utc)
        if self._resuming:
            self._resuming = False
            self._resume()
        self.plan_due(now)
        self.release_embedded()
        self.evaluate_done(now)
        # The lag is written once per new base window that is due, planned or still held back.
        due = due_windows(None, now, self.window_s, self.lag_s, 1)
        if due and due[-1] != self._lag_window:
            self._lag_window = due[-1]
            self.record_lag(due[-1], now)

    def plan_due(self, now: datetime) -> list[Window]:
        """Cut every due window into units and publish them, in window order; returns the new base windows.

        A window is published only once the one before it (same granularity) has all its units done, and
        an hourly or daily window only once every minute window in it is done: a window's drift evidence
        and reference period follow from the rows of the window before it (the CUSUM of
        :func:`llmsight.analyzers.drift.evidence_step`, and the run it holds the reference behind), and
        the longer horizons read the vectors the minute windows stored. Within a window the units run in
        parallel; across windows of one granularity they run in order, as in one process.
        """
        base: list[Window] = []
        pending = [item.window for item in unfinished(self.client) if len(item.done) < item.units]
        for granularity, seconds, catchup in ((BASE_GRANULARITY, self.window_s, self.catchup),
                                              ("1h", ROLLUPS["1h"], 24), ("1d", ROLLUPS["1d"], 7)):
            if granularity not in self._last:
                self._last[granularity] = last_planned(self.client, granularity)
            for window in due_windows(self._last[granularity], now, seconds, self.lag_s, catchup, granularity):
                if self._stopping.is_set():
                    return base
                waiting_for = self._waiting_for(window, pending)
                if waiting_for is not None:
                    if self._held.get(granularity) != window.start:
                        self._held[granularity] = window.start
                        log.info("analyzers: %s waits for %s to be done", window, waiting_for)
                    break
                if self.publish(window, segments_in(self.client, window)):
                    pending.append(window)
                self._last[granularity] = window.start
                if granularity == BASE_GRANULARITY:
                    base.append(window)
        return base

    def _waiting_for(self, window: Window, pending: list[Window]) -> Window | str | None:
        """What ``window`` must wait for before it is published (None: nothing)."""
        for other in pending:
            if other.granularity == window.granularity and other.start < window.start:
                return other
            if window.granularity != BASE_GRANULARITY and other.granularity == BASE_GRANULARITY \
                    and other.start < window.end:
                return other
        if window.granularity != BASE_GRANULARITY:
            newest = self._last.get(BASE_GRANULARITY)
            if newest is None or newest + timedelta(seconds=self.window_s) < window.end:
                return f"the minute windows up to {window.end:%Y-%m-%d %H:%M}"
        return None

    def publish(self, window: Window, segments: list[dict[str, str]], planned_at: datetime | None = None) -> int:
        """Record the window's plan, then publish its units (a crash in between is repaired by the timeout)."""
        planned_at = planned_at or datetime.now(timezone.utc)
        planned_at = planned_at.replace(microsecond=planned_at.microsecond // 1000 * 1000)  # stored to the ms
        units = cut(window, segments, self.queue.unit_segments, plan_id(planned_at))
        record_window(self.client, window, len(units), PLANNED, planned_at)
        shards = self._shards(len(units)) if self.embed_phase and window.granularity == BASE_GRANULARITY else 0
        if shards:
            # Its texts first, each embedded once (llmsight.scheduler.embedding); release_embedded then
            # publishes the analysis units.
            self._embedding[(window.granularity, window.start)] = (units, shards, time.monotonic())
            self._send(embed_units(window, segments, shards, plan_id(planned_at)))
        else:
            self._send(units)
        log.info("analyzers: planned %s: %d segments in %d units%s", window, len(segments), len(units),
                 f" after {shards} embedding units" if shards else "")
        return len(units)

    def _shards(self, units: int) -> int:
        """Embedding units for a window of ``units``: one per worker that did units in the last ten
        minutes (two when none did), at most one per unit and ``EMBED_SHARDS``. Each reads the window's
        text sample, so more shards than workers would only read it more often."""
        if not units:
            return 0
        workers = int(self.client.query(
            "SELECT uniqExact(worker) FROM analysis_units WHERE done_at > now64(3) - INTERVAL 10 MINUTE"
        ).result_rows[0][0])
        return max(1, min(units, workers or 2, EMBED_SHARDS))

    def release_embedded(self) -> int:
        """Publish the analysis units of each window whose embedding units are all done (or, after
        ``unit_timeout_s``, anyway: its units then embed what is missing); returns how many windows."""
        released = 0
        for key, (units, shards, since) in list(self._embedding.items()):
            waited = time.monotonic() - since
            if shards_done(self.client, units[0].window, units[0].plan) >= shards or waited > self.queue.unit_timeout_s:
                del self._embedding[key]
                self._send(units)
                released += 1
        return released

    def _resume(self) -> None:
        """On becoming the coordinator: publish the units not done of every unfinished window (the one
        before may have died between a window's embedding and analysis units; a unit sent twice is
        analysed twice and writes the same rows)."""
        for item in unfinished(self.client):
            if item.units and len(item.done) < item.units:
                segments = segments_in(self.client, item.window)
                units = cut(item.window, segments, self.queue.unit_segments, item.plan)
                if len(units) != item.units:  # late events changed the window's segments: plan it again
                    self.publish(item.window, segments)
                else:
                    self._send([u for u in units if u.index not in item.done])

    def _send(self, units: list[WorkUnit]) -> None:
        for unit in units:
            # Round-robin over the partitions, and partitions round-robin over the workers: a window's
            # units split evenly when the worker count divides the partition count.
            self.producer.send(self.queue.topic, key=unit.key, value=unit.encode(),
                               partition=unit.index % self.queue.partitions)
        self.producer.flush(timeout=30)

    def evaluate_done(self, now: datetime) -> int:
        """Evaluate the alert rules on each finished window, oldest first; stop at the first unfinished one."""
        evaluated = 0
        open_windows = unfinished(self.client)
        blocked: set[str] = set()
        for item in open_windows:
            granularity = item.window.granularity
            if granularity in blocked:
                continue
            if len(item.done) >= item.units:
                rows = [r for r in read_metrics(self.client, item.window) if r["metric"] not in LAG_METRICS]
                self.alerts.evaluate(item.window.start, rows, granularity, now=now)
                record_window(self.client, item.window, item.units, EVALUATED, item.planned_at, now)
                self.windows_evaluated += 1
                evaluated += 1
                continue
            blocked.add(granularity)  # alert states move window by window, in order
            if (now - item.planned_at).total_seconds() > self.queue.unit_timeout_s:
                self._republish(item)
        return evaluated

    def _republish(self, item: Unfinished) -> None:
        segments = segments_in(self.client, item.window)
        units = cut(item.window, segments, self.queue.unit_segments, item.plan)
        if len(units) != item.units:  # late events changed the window's segments: plan it again
            log.warning("analyzers: %s changed from %d to %d units; planning it again", item.window, item.units,
                        len(units))
            self.publish(item.window, segments)
            return
        missing = [u for u in units if u.index not in item.done]
        log.warning("analyzers: %s unfinished after %.0f s: publishing %d units again", item.window,
                    self.queue.unit_timeout_s, len(missing))
        self._send(missing)
        record_window(self.client, item.window, item.units, PLANNED, item.planned_at)  # restarts its timeout

    def record_lag(self, window: Window, now: datetime) -> None:
        record_lag(self.client, lag_rows(self.client, window, now), now, self.lag_alerts)

    def stop(self) -> None:
        self._stopping.set()
        if self.evaluators is not None:
            self.evaluators.stop()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


def member_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"
