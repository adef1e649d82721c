"""Where the stream job is: its Prometheus endpoint when it answers, else its checkpoint and
the broker's end offsets.

Every outside call here has a short timeout: the Stream page must answer even when the job
or the broker is down, and say so.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.config import PitstopConfig
from core.errors import PitstopError
from core.kafka_clients import DebugLog, connection_config
from streaming.progress import committed_offsets, source_offsets

log = logging.getLogger(__name__)

DEFAULT_METRICS_PORT = 9464
METRIC_PREFIX = "pitstop_"


@dataclass
class MetricFamily:
    """One Prometheus metric family: its type, help and samples (labels -> value)."""

    name: str
    kind: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def value(self, suffix: str = "", **labels: str) -> float | None:
        """The first sample named `name + suffix` whose labels include `labels`."""
        for sample_name, sample_labels, value in self.samples:
            if sample_name == self.name + suffix and labels.items() <= sample_labels.items():
                return value
        return None

    def by_label(self, label: str, suffix: str = "") -> dict[str, float]:
        """label value -> sample value, for the samples that carry `label`."""
        return {
            labels[label]: value
            for name, labels, value in self.samples
            if name == self.name + suffix and label in labels
        }


def metrics_port(cfg: PitstopConfig) -> int:
    """`stream.metrics_port` where the configuration has it, else Prometheus' usual 9464."""
    return int(getattr(cfg.stream, "metrics_port", None) or DEFAULT_METRICS_PORT)


def parse_metrics(text: str, prefix: str = METRIC_PREFIX) -> dict[str, MetricFamily]:
    """The families named `prefix...` in Prometheus' text exposition format."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        samples = [(s.name, dict(s.labels), float(s.value)) for s in family.samples]
        families[family.name] = MetricFamily(
            family.name, family.type, family.documentation, samples
        )
    return families


def scrape_metrics(url: str, timeout_s: float = 0.5) -> dict[str, MetricFamily] | None:
    """The job's pitstop_* metrics from `url`, or None when nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback)
            text = response.read(2_000_000).decode("utf-8", "replace")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        log.debug("No metrics at %s: %s", url, exc)
        return None
    try:
        return parse_metrics(text)
    except ValueError as exc:
        log.warning("The metrics at %s are not in Prometheus' text format: %s", url, exc)
        return None


def histogram_quantile(family: MetricFamily, q: float) -> float | None:
    """The `q` quantile of a Prometheus histogram, interpolated inside its buckets as
    Prometheus' own histogram_quantile does; None without observations."""
    buckets = sorted(
        (math.inf if labels["le"] in ("+Inf", "inf") else float(labels["le"]), value)
        for name, labels, value in family.samples
        if name == family.name + "_bucket" and "le" in labels
    )
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            width = count - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


def batch_history(checkpoint: str, limit: int = 120) -> pd.DataFrame:
    """The last `limit` committed micro-batches of a local checkpoint: `batch`, `started`
    (Spark's batch timestamp), `committed` (when its commit file was written), `rows`
    (Kafka messages it covered; unknown for the first batch of the history)."""
    columns = ["batch", "started", "committed", "rows"]
    root = Path(checkpoint)
    if "://" in checkpoint or not (root / "commits").is_dir():
        return pd.DataFrame(columns=columns)
    done = sorted(int(p.name) for p in (root / "commits").iterdir() if p.name.isdigit())
    wanted = done[-(limit + 1) :]
    offsets: dict[int, dict[str, dict[str, int]]] = {}
    rows = []
    for batch in wanted:
        text = _read(root / "offsets" / str(batch))
        if text is None:
            continue
        try:
            offsets[batch] = source_offsets(text)
        except (ValueError, AttributeError, TypeError):  # a file source's offsets, not Kafka's
            offsets[batch] = {}
        started = _batch_timestamp(text)
        committed = dt.datetime.fromtimestamp(
            (root / "commits" / str(batch)).stat().st_mtime, dt.timezone.utc
        )
        previous = offsets.get(batch - 1)
        count = None if previous is None else _messages_between(previous, offsets[batch])
        rows.append((batch, started, committed, count))
    frame = pd.DataFrame(rows[-limit:], columns=columns)
    frame["started"] = pd.to_datetime(frame["started"], utc=True)
    frame["committed"] = pd.to_datetime(frame["committed"], utc=True)
    frame["rows"] = pd.to_numeric(frame["rows"])
    return frame


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def _batch_timestamp(text: str) -> dt.datetime | None:
    """Line 2 of an offsets file: the batch's metadata, with Spark's batch timestamp."""
    lines = text.splitlines()
    try:
        millis = json.loads(lines[1])["batchTimestampMs"]
    except (IndexError, KeyError, ValueError, TypeError):
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.timezone.utc)


def _messages_between(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> int:
    return sum(
        max(offset - before.get(topic, {}).get(partition, offset), 0)
        for topic, partitions in after.items()
        for partition, offset in partitions.items()
    )


def last_committed(checkpoint: str) -> dict[str, dict[int, int]]:
    """topic -> partition -> next offset, as of the last committed batch (local checkpoints)."""
    if "://" in checkpoint or not Path(checkpoint).is_dir():
        return {}
    try:
        return committed_offsets(checkpoint)
    except (ValueError, AttributeError, TypeError):  # a file source's offsets, not Kafka's
        return {}


class BrokerUnavailable(PitstopError):
    """The broker did not answer in time; the message names it (never its credentials)."""


def broker_end_offsets(
    cfg: PitstopConfig, topics: list[str], timeout_s: float = 1.5
) -> dict[str, dict[int, int]]:
    """The high watermark of every partition of `topics`, from the configured broker."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    settings = connection_config(cfg.kafka)
    settings.update(
        {
            "client.id": "pitstop-console",
            "group.id": "pitstop-console",
            "enable.auto.commit": False,
            "logger": DebugLog(__name__),
            "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
        }
    )
    consumer = Consumer(settings)
    where = cfg.kafka.bootstrap_servers
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        ends: dict[str, dict[int, int]] = {}
        for topic in topics:
            known = metadata.topics.get(topic)
            if known is None or known.error is not None:
                continue
            ends[topic] = {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
                for p in sorted(known.partitions)
            }
        return ends
    except KafkaException as exc:
        log.debug("Kafka end offsets from %s failed: %s", where, exc.args[0].name())
        raise BrokerUnavailable(f"The Kafka broker at {where} did not answer.") from None
    finally:
        consumer.close()


class EndOffsets:
    """Broker end offsets kept briefly: an answer for `ok_ttl_s`, a failure for `down_ttl_s`,
    so a down broker costs one timeout per `down_ttl_s`, not one per page view."""

    def __init__(self, cfg: PitstopConfig, ok_ttl_s: float = 2.0, down_ttl_s: float = 15.0) -> None:
        self._cfg = cfg
        self._ttl = (ok_ttl_s, down_ttl_s)
        self._lock = threading.Lock()
        self._kept: tuple[float, dict | None, str | None] | None = None

    def get(self, topics: list[str]) -> tuple[dict[str, dict[int, int]], str | None]:
        """(end offsets, problem): offsets per topic partition, or a sentence why there are none."""
        with self._lock:
            now = time.monotonic()
            if self._kept is not None:
                at, ends, problem = self._kept
                if now - at < self._ttl[0 if problem is None else 1]:
                    return ends or {}, problem
            try:
                ends, problem = broker_end_offsets(self._cfg, topics), None
            except PitstopError as exc:  # BrokerUnavailable, or a missing connection string
                ends, problem = {}, str(exc)
            self._kept = (time.monotonic(), ends, problem)
            return ends, problem
