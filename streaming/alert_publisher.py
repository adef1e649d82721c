"""Publish each alert opening once to the vehicle-alerts topic (the path to the car's head unit).

The alert table is the outbox: an opening is published, then marked `published_at`. A
crash between the two is repaired at start-up by reading back the alert ids the topic
already holds, so an opening reaches the topic once even across restarts -- without Kafka
transactions, which Event Hubs does not offer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from pitstop.config import PitstopConfig
from streaming import sinks

log = logging.getLogger(__name__)


def alert_message(row: dict) -> bytes:
    """The JSON the head unit receives for one alert opening."""
    return json.dumps(
        {
            "alert_id": row["alert_id"],
            "car_id": row["car_id"],
            "battery_id": row["battery_id"],
            "alert_date": str(row["alert_date"]),
            "predicted_failure_date": str(row["predicted_failure_date"]),
            "message": row["message"],
        }
    ).encode("utf-8")


def unpublished_openings(spark: SparkSession, path: str) -> DataFrame:
    """Open alerts not yet marked as sent to the alerts topic (the outbox's pending rows)."""
    return (
        spark.read.format("delta")
        .load(path)
        .where(F.col("published_at").isNull() & (F.col("status") == "open"))
    )


def publish_new_alerts(spark: SparkSession, cfg: PitstopConfig, path: str) -> int:
    """Send every unpublished open alert to the alerts topic, then mark them; returns the count."""
    pending = [r.asDict() for r in unpublished_openings(spark, path).collect()]
    if not pending:
        return 0
    key, producer = _producer(cfg)
    try:
        for row in pending:
            producer.produce(
                cfg.kafka.topics.alerts, key=row["alert_id"].encode(), value=alert_message(row)
            )
        remaining = producer.flush(60)
        if remaining:
            raise RuntimeError(f"{remaining} alert message(s) were not acknowledged by Kafka.")
    except Exception:
        # A producer that failed may be in a fatal state: the next batch starts a fresh one.
        _PRODUCERS.pop(key, None)
        raise
    sinks.mark_published(spark, [r["alert_id"] for r in pending], path)
    log.info("Published %d alert opening(s) to %s", len(pending), cfg.kafka.topics.alerts)
    return len(pending)


def reconcile_published(spark: SparkSession, cfg: PitstopConfig, path: str) -> int:
    """Mark alerts whose message is already on the topic (a crash after send, before marking)."""
    from confluent_kafka import Consumer, TopicPartition

    unmarked = {
        r.alert_id
        for r in spark.read.format("delta")
        .load(path)
        .where(F.col("published_at").isNull())
        .select("alert_id")
        .collect()
    }
    if not unmarked:
        return 0
    consumer = Consumer(
        {**_client_config(cfg), "group.id": "pitstop-reconcile", "enable.auto.commit": False}
    )
    found: set[str] = set()
    try:
        topic = cfg.kafka.topics.alerts
        metadata = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 15)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            position = low
            while position < high:
                message = consumer.poll(5)
                if message is None:
                    break
                position = message.offset() + 1
                if message.error() is None and message.key():
                    found.add(message.key().decode("utf-8", errors="replace"))
    finally:
        consumer.close()
    already = sorted(unmarked & found)
    sinks.mark_published(spark, already, path)
    if already:
        log.info("Marked %d alert(s) found on the topic as published", len(already))
    return len(already)


def _client_config(cfg: PitstopConfig) -> dict:
    from simulator.sinks.kafka import producer_config

    conf, _secrets = producer_config(cfg.kafka)
    return {
        k: v
        for k, v in conf.items()
        if k.startswith(("bootstrap", "security", "sasl", "ssl", "socket", "client"))
    }


# One producer per broker configuration for the job's life: a new one per publish cost a
# connection and an idempotent-producer id each micro-batch.
_PRODUCERS: dict[tuple, Any] = {}


def _producer(cfg: PitstopConfig) -> tuple[tuple, Any]:
    """The cached producer for `cfg`'s broker (created on first use), and its cache key."""
    from confluent_kafka import Producer

    from simulator.sinks.kafka import producer_config

    conf, _secrets = producer_config(cfg.kafka)
    conf["client.id"] = "pitstop-alerts"
    key = tuple(sorted((k, str(v)) for k, v in conf.items()))
    if key not in _PRODUCERS:
        # Only the newest configuration's: a dropped producer stops reconnecting to a broker
        # that is gone (tests start many).
        _PRODUCERS.clear()
        _PRODUCERS[key] = Producer(conf)
    return key, _PRODUCERS[key]


def close_producers() -> None:
    """Drop the cached producers (each has flushed: publishing waits for every ack)."""
    _PRODUCERS.clear()
