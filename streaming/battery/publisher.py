"""Publish each alert opening once to the vehicle-alerts topic (the path to the car's head unit).

Battery alerts and compliance alerts go the same way, each message naming its `kind`. The
alert table is the outbox: a micro-batch commits its openings, then sends them, then
marks them `published_at` in a cheap delta-rs commit of just those rows. A crash between
send and mark is repaired at start-up by reading back the alert ids the topic already
holds, and a crash between commit and send by sending what is still unmarked -- so an
opening reaches the topic once even across restarts, without Kafka transactions, which
Event Hubs does not offer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from core.config import PitstopConfig
from core.kafka_clients import connection_config, producer_config
from streaming.battery.alert_table import AlertTable, utc_now

log = logging.getLogger(__name__)


def alert_message(row: dict) -> bytes:
    """The JSON the head unit receives for one battery alert opening."""
    return json.dumps(
        {
            "kind": "battery",
            "alert_id": row["alert_id"],
            "car_id": row["car_id"],
            "battery_id": row["battery_id"],
            "alert_date": str(row["alert_date"]),
            "predicted_failure_date": str(row["predicted_failure_date"]),
            "message": row["message"],
        }
    ).encode("utf-8")


def compliance_message(row: dict) -> bytes:
    """The JSON the head unit receives for one compliance alert opening."""
    return json.dumps(
        {
            "kind": "compliance",
            "alert_id": row["alert_id"],
            "car_id": row["car_id"],
            "note_id": row["note_id"],
            "component": row["component"],
            "message": (
                f"A technician's note says your car's {row['component']} is out of compliance. "
                "Please book a service appointment."
            ),
        }
    ).encode("utf-8")


def publish_openings(
    cfg: PitstopConfig,
    openings: pd.DataFrame,
    table: AlertTable,
    message: Callable[[dict], bytes] = alert_message,
) -> int:
    """Send these committed openings to the alerts topic, wait for the acks, mark them."""
    if openings.empty:
        return 0
    rows = openings.to_dict("records")
    key, producer = _producer(cfg)
    try:
        for row in rows:
            producer.produce(
                cfg.kafka.topics.alerts, key=row["alert_id"].encode(), value=message(row)
            )
        remaining = producer.flush(60)
        if remaining:
            raise RuntimeError(f"{remaining} alert message(s) were not acknowledged by Kafka.")
    except Exception:
        # A producer that failed may be in a fatal state: the next batch starts a fresh one.
        _PRODUCERS.pop(key, None)
        raise
    table.mark_published([r["alert_id"] for r in rows], utc_now())
    log.info("Published %d alert opening(s) to %s", len(rows), cfg.kafka.topics.alerts)
    return len(rows)


def publish_pending(
    cfg: PitstopConfig, table: AlertTable, message: Callable[[dict], bytes] = alert_message
) -> int:
    """Send every committed opening not yet marked (a crash between commit and send)."""
    return publish_openings(cfg, table.unpublished(), table, message)


def reconcile_published(cfg: PitstopConfig, table: AlertTable) -> int:
    """Mark alerts whose message is already on the topic (a crash after send, before marking)."""
    from confluent_kafka import Consumer, TopicPartition

    unmarked = set(table.unpublished(open_only=False)["alert_id"])
    if not unmarked:
        return 0
    consumer = Consumer(
        {
            **connection_config(cfg.kafka),
            "group.id": "pitstop-reconcile",
            "enable.auto.commit": False,
        }
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
    table.mark_published(already, utc_now())
    if already:
        log.info("Marked %d alert(s) found on the topic as published", len(already))
    return len(already)


# One producer per broker configuration for the job's life: a new one per publish cost a
# connection and an idempotent-producer id each micro-batch.
_PRODUCERS: dict[tuple, Any] = {}


def _producer(cfg: PitstopConfig) -> tuple[tuple, Any]:
    """The cached producer for `cfg`'s broker (created on first use), and its cache key."""
    from confluent_kafka import Producer

    conf, _secrets = producer_config(cfg.kafka)
    # A handful of messages a batch, waited for at once: no point lingering for more.
    conf.update({"client.id": "pitstop-alerts", "linger.ms": 2})
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
