"""The stream job's Prometheus metrics, fed by what every micro-batch already knows.

Nothing here runs a Spark action or reads a table: rates, durations and Kafka lag come from
the queries' progress reports (a `StreamingQueryListener` on the driver), quarantine and
alert counts from the counts each micro-batch observes while it is computed once
(`streaming.query.materialise`), and event-to-alert latency from an observed histogram of
the new readings' Kafka timestamps, read against the moment the batch's sinks committed.

`start_metrics` serves them at http://<stream.metrics_host>:<stream.metrics_port>/metrics
(loopback and 9464 by default; port 0 turns them off).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import HistogramMetricFamily
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQueryListener

from core.config import PitstopConfig

log = logging.getLogger(__name__)

# Seconds. Event-to-alert spans a trigger interval plus one or two micro-batches (README's
# measured p50 ~10 s at 1,000 readings/s on 2 cores); a backlog takes minutes.
LATENCY_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300, 600)
BATCH_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60, 120)


class WeightedHistogram:
    """A Prometheus histogram that takes (value, how many) pairs at once.

    The micro-batch hands over its readings' latencies as a compact histogram of their
    Kafka timestamps (Spark's `histogram_numeric`), not one value per reading.
    """

    def __init__(self, name: str, documentation: str, buckets: Iterable[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = tuple(sorted(buckets))
        self._counts = [0.0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, pairs: Iterable[tuple[float, float]]) -> None:
        """Count `weight` observations of `value` for each (value, weight)."""
        with self._lock:
            for value, weight in pairs:
                index = next(
                    (i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds)
                )
                self._counts[index] += weight
                self._sum += value * weight

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative, buckets = 0.0, []
            for bound, count in zip((*self.bounds, float("inf")), self._counts, strict=True):
                cumulative += count
                label = "+Inf" if bound == float("inf") else repr(float(bound))
                buckets.append((label, cumulative))
            total = self._sum
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=buckets,
            sum_value=total,
        )


class StreamMetrics:
    """Every metric of the job, in a registry of its own (tests may build several)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.input_rate = Gauge(
            "pitstop_input_rows_per_second",
            "Rows per second arriving from the source (last progress report)",
            ["query"],
            registry=r,
        )
        self.processed_rate = Gauge(
            "pitstop_processed_rows_per_second",
            "Rows per second the query processed (last progress report)",
            ["query"],
            registry=r,
        )
        self.batch_duration = Histogram(
            "pitstop_batch_duration_seconds",
            "Wall time of a micro-batch, trigger to commit",
            ["query"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.kafka_lag = Gauge(
            "pitstop_kafka_lag",
            "Records in the topic partition beyond the last micro-batch's end offset",
            ["topic", "partition"],
            registry=r,
        )
        self.quarantined = Counter(
            "pitstop_quarantined",
            "Messages quarantined, by reason category (core.reasons)",
            ["reason"],
            registry=r,
        )
        self.alerts_opened = Counter(
            "pitstop_alerts_opened", "Alert openings committed", ["kind"], registry=r
        )
        self.alerts_closed = Counter(
            "pitstop_alerts_closed", "Alerts closed by the stream", ["kind"], registry=r
        )
        self.model_version = Gauge(
            "pitstop_model_version_info",
            "The registered model versions the stream scores with (value 1)",
            ["name", "version", "role"],
            registry=r,
        )
        self.last_batch_id = Gauge(
            "pitstop_last_batch_id", "Id of the last completed micro-batch", ["query"], registry=r
        )
        self.last_batch_time = Gauge(
            "pitstop_last_batch_timestamp_seconds",
            "Unix time the last micro-batch completed",
            ["query"],
            registry=r,
        )
        self.event_to_alert = WeightedHistogram(
            "pitstop_event_to_alert_seconds",
            "Kafka timestamp of a reading to the commit of its micro-batch's sinks",
            LATENCY_BUCKETS,
        )
        r.register(self.event_to_alert)
        self._models: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def record_progress(self, progress: Any) -> None:
        """One query progress report (StreamingQueryProgress): rates, duration, lag, batch."""
        query = progress.name or str(progress.id)
        self.input_rate.labels(query).set(_number(progress.inputRowsPerSecond))
        self.processed_rate.labels(query).set(_number(progress.processedRowsPerSecond))
        duration_ms = (progress.durationMs or {}).get("triggerExecution")
        if duration_ms is not None and progress.numInputRows:
            self.batch_duration.labels(query).observe(duration_ms / 1000.0)
        self.last_batch_id.labels(query).set(progress.batchId)
        self.last_batch_time.labels(query).set(time.time())
        for source in progress.sources or []:
            for (topic, partition), lag in kafka_lag(source.endOffset, source.latestOffset):
                self.kafka_lag.labels(topic, partition).set(lag)

    def record_quarantined(self, by_category: dict[str, int]) -> None:
        """Add a micro-batch's quarantined messages per reason category."""
        for category, count in by_category.items():
            self.quarantined.labels(category).inc(count)

    def record_alerts(self, kind: str, opened: int, closed: int = 0) -> None:
        """Add a micro-batch's alert openings and closings of `kind` (battery, compliance)."""
        self.alerts_opened.labels(kind).inc(opened)
        self.alerts_closed.labels(kind).inc(closed)

    def record_models(self, refs: Iterable[Any]) -> None:
        """The versions in use (ModelRef: name, version, role); a replaced version is dropped."""
        with self._lock:
            for ref in refs:
                key = (ref.name, ref.role)
                previous = self._models.get(key)
                if previous == ref.version:
                    continue
                if previous is not None:
                    self.model_version.remove(ref.name, previous, ref.role)
                self.model_version.labels(ref.name, ref.version, ref.role).set(1)
                self._models[key] = ref.version

    def record_latency(self, arrivals: Any, committed_at: float) -> None:
        """Event-to-alert latency of a batch's new readings: `arrivals` is the observed
        `histogram_numeric` of their Kafka timestamps in epoch milliseconds (rows x, y)."""
        if arrivals:
            self.event_to_alert.observe_many(
                (max(0.0, committed_at - row[0] / 1000.0), float(row[1])) for row in arrivals
            )


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number else 0.0  # NaN (no rows yet) reads as 0


def kafka_lag(end_offset: Any, latest_offset: Any) -> list[tuple[tuple[str, str], int]]:
    """((topic, partition), records behind) from a Kafka source's progress offsets (JSON
    text or dicts, {topic: {partition: offset}}); [] for another kind of source."""
    end, latest = _offsets(end_offset), _offsets(latest_offset)
    lag = []
    for topic, partitions in latest.items():
        for partition, newest in partitions.items():
            done = end.get(topic, {}).get(partition)
            if done is not None:
                lag.append(((topic, partition), max(0, int(newest) - int(done))))
    return lag


def _offsets(value: Any) -> dict[str, dict[str, int]]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(topic): {str(p): int(o) for p, o in partitions.items()}
        for topic, partitions in value.items()
        if isinstance(partitions, dict)
    }


class MetricsListener(StreamingQueryListener):
    """Feeds `StreamMetrics` from every query's progress reports (on Spark's listener bus)."""

    def __init__(self, metrics: StreamMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802 (Spark's name)
        pass

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        try:
            self.metrics.record_progress(event.progress)
        except Exception as exc:  # a metrics bug must never stop the stream
            log.warning("Could not record a progress report: %s", exc)

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        pass

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        pass


_SERVED: dict[tuple[str, int], StreamMetrics] = {}
_LISTENING: set[tuple[str, int, str]] = set()


def start_metrics(spark: SparkSession, cfg: PitstopConfig) -> StreamMetrics | None:
    """Serve the job's metrics on `stream.metrics_host:metrics_port` and feed them from every
    query of `spark`; None when the port is 0 or taken (the stream runs on without them)."""
    port, host = cfg.stream.metrics_port, cfg.stream.metrics_host
    if not port:
        return None
    key = (host, port)
    if key not in _SERVED:  # one server per address and process (tests build many jobs)
        metrics = StreamMetrics()
        try:
            start_http_server(port, addr=host, registry=metrics.registry)
        except OSError as exc:
            log.warning("Not serving metrics on %s:%d: %s", host, port, exc)
            return None
        _SERVED[key] = metrics
        log.info("Serving Prometheus metrics at http://%s:%d/metrics", host, port)
    session = (host, port, spark.sparkContext.applicationId)
    if session not in _LISTENING:
        spark.streams.addListener(MetricsListener(_SERVED[key]))
        _LISTENING.add(session)
    return _SERVED[key]
