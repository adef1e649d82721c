"""The component-notes stream end to end through the real broker: Kafka -> job -> Delta."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from confluent_kafka import Producer
from pyspark.sql import Row
from pyspark.testing import assertDataFrameEqual

from apps.alerts import acknowledge_alert, query_alerts
from core.config import PitstopConfig, TopicsConfig
from simulator.notes import generate_notes
from streaming import tables
from streaming.model_refs import ModelUnavailableError
from streaming.notes.flow import build_notes_job, process_notes_batch, start_notes_query
from tests.conftest import make_test_config
from tests.integration.test_stream_e2e import topic_keys

pytestmark = pytest.mark.integration


def _note(note_id: str, text: object) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "note_id": note_id,
            "car_id": "C-bad",
            "component": "water pump",
            "text": text,
            "written_at": "2024-03-01T10:00:00Z",
        }
    ).encode()


BAD_NOTES = {
    b"definitely not json": "not JSON",
    b'{"schema_version": 1, "note_id": "x1", "car_id": "C-bad", "component": "pump",'
    b' "written_at": "2024-03-01T10:00:00Z"}': "missing required field 'text'",
    _note("x2", ""): "field 'text' must not be empty",
    _note("x3", 42): "field 'text' must be a string, got 42",
    _note("x4", "cast iron pump " * 800): "note text too long: 12000 bytes > 10000",
    _note("x5", "\x00\x01\x02\x03 pump"): (
        "note text is not plain text (control or invalid characters)"
    ),
}


@pytest.fixture
def notes_config(tmp_path, kafka_bootstrap, kafka_topic_factory) -> PitstopConfig:
    cfg = make_test_config(tmp_path)
    return cfg.model_copy(
        update={
            "kafka": cfg.kafka.model_copy(
                update={
                    "bootstrap_servers": kafka_bootstrap,
                    "topics": TopicsConfig(
                        telemetry=kafka_topic_factory(1, "telemetry"),
                        notes=kafka_topic_factory(2, "notes"),
                        alerts=kafka_topic_factory(1, "alerts"),
                    ),
                }
            )
        }
    )


def test_job_refuses_to_start_without_a_champion(spark, notes_config) -> None:
    with pytest.raises(ModelUnavailableError, match="pitstop train compliance"):
        build_notes_job(spark, notes_config)


def test_notes_stream_alerts_non_compliant_notes_and_quarantines_bad_ones(
    spark, notes_config, kafka_bootstrap
) -> None:
    from apps.training_data import train_compliance_on_simulated_notes

    cfg = notes_config
    trained = train_compliance_on_simulated_notes(
        cfg, epochs=3, seed=0, train_size=10_000, val_size=500, holdout_size=1_000
    )
    assert trained.promoted
    cars = [f"C{i:05d}" for i in range(1, 31)]
    notes = list(generate_notes(cars, "2024-01-01", 365, seed=21, notes_per_car_per_year=10))
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for note in notes:
        message = {k: v for k, v in note.items() if k != "non_compliant"}
        producer.produce(cfg.kafka.topics.notes, key=note["car_id"], value=json.dumps(message))
    repeated = next(n for n in notes if n["non_compliant"])
    producer.produce(  # the same note sent twice must alert once
        cfg.kafka.topics.notes,
        key=repeated["car_id"],
        value=json.dumps({k: v for k, v in repeated.items() if k != "non_compliant"}),
    )
    for payload in BAD_NOTES:
        producer.produce(cfg.kafka.topics.notes, key=b"C-bad", value=payload)
    assert producer.flush(10) == 0

    job = build_notes_job(spark, cfg, count_loads=True)
    start_notes_query(spark, job, available_now=True).awaitTermination()

    read = lambda name: spark.read.format("delta").load(job.paths[name])  # noqa: E731
    alerts, quarantine = read(tables.COMPLIANCE_ALERTS), read(tables.QUARANTINE)
    expected = {(n["car_id"], n["note_id"]) for n in notes if n["non_compliant"]}
    assert 0 < len(expected) < len(notes)
    assertDataFrameEqual(
        alerts.select("car_id", "note_id"), [Row(car_id=c, note_id=n) for c, n in expected]
    )
    assert alerts.count() == len(expected)
    assert alerts.schema.fieldNames() == tables.COMPLIANCE_ALERT_SCHEMA.fieldNames()
    # Each opening reached the vehicle-alerts topic once, and is marked as published.
    published = topic_keys(kafka_bootstrap, cfg.kafka.topics.alerts)
    assert sorted(published) == sorted(r.alert_id for r in alerts.collect())
    assert alerts.where("status = 'open' AND published_at IS NOT NULL").count() == len(expected)
    row = alerts.first()
    assert row.model_name == cfg.mlflow.models.compliance and row.model_version == trained.version
    assert row.probability >= 0.5 and row.written_at and row.created_at and row.text
    assertDataFrameEqual(quarantine.select("reason"), [Row(reason=r) for r in BAD_NOTES.values()])
    assert job.loads.value <= 2  # at most once per Python worker, not per task
    # `pitstop alerts --kind compliance` reads the same rows without a JVM.
    assert len(query_alerts(cfg, "compliance")) == len(expected)

    # Replaying the micro-batch (a crash before the checkpoint commit) changes nothing...
    before = (alerts.count(), quarantine.count())
    replay = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap)
        .option("subscribe", cfg.kafka.topics.notes)
        .option("startingOffsets", "earliest")
        .load()
    )
    process_notes_batch(job, replay, 0)
    assert (read(tables.COMPLIANCE_ALERTS).count(), read(tables.QUARANTINE).count()) == before
    # ...and a restart from the checkpoint finds nothing new.
    again = build_notes_job(spark, cfg)
    start_notes_query(spark, again, available_now=True).awaitTermination()
    assert (read(tables.COMPLIANCE_ALERTS).count(), read(tables.QUARANTINE).count()) == before
    # Neither sent any opening a second time.
    assert sorted(topic_keys(kafka_bootstrap, cfg.kafka.topics.alerts)) == sorted(published)

    # An operator acknowledges a compliance alert by its id, as a battery alert.
    chosen = published[0]
    assert acknowledge_alert(cfg, chosen, by="ops") == 1
    acked = read(tables.COMPLIANCE_ALERTS).where(f"alert_id = '{chosen}'").first()
    assert acked.status == "acknowledged" and acked.close_reason == "acknowledged by ops"
    assert len(query_alerts(cfg, "compliance")) == len(expected) - 1


def test_a_crash_between_commit_and_send_is_published_once_at_start_up(
    spark, notes_config, kafka_bootstrap
) -> None:
    """A compliance opening committed but never sent (the job died in between) is sent by the
    next start, once; one sent but not marked is only marked."""
    from deltalake import DeltaTable

    from streaming.battery.alert_table import AlertTable
    from streaming.battery.publisher import (
        compliance_message,
        publish_openings,
        publish_pending,
        reconcile_published,
    )
    from streaming.notes.classify import compliance_alert_rows
    from streaming.notes.flow import insert_compliance_alerts

    cfg = notes_config
    paths = tables.ensure_tables(spark, cfg)
    location = paths[tables.COMPLIANCE_ALERTS]
    scored = pd.DataFrame(
        {
            "car_id": ["C1", "C2"],
            "note_id": ["n1", "n2"],
            "component": ["pump", "hose"],
            "text": ["Iron pump made in 1990", "Plastic hose in poor condition"],
            "probability": [0.9, 0.8],
            "written_at": [pd.Timestamp("2024-03-01", tz="UTC")] * 2,
            "model_name": ["component-compliance"] * 2,
            "model_version": ["1"] * 2,
            "topic": ["notes"] * 2,
            "partition": [0, 0],
            "offset": [1, 2],
        }
    )
    alerts = compliance_alert_rows(scored)
    assert insert_compliance_alerts(location, alerts, "crashed-job", 0) == 2
    table = AlertTable(location, schema=tables.COMPLIANCE_ALERT_SCHEMA)
    # C1's opening was sent before the crash, but not marked.
    publish_openings(cfg, table.rows("car_id = 'C1'"), table, compliance_message)
    DeltaTable(location).update(predicate="car_id = 'C1'", updates={"published_at": "NULL"})

    # What build_notes_job does at start-up, before it resolves the model.
    reconcile_published(cfg, table)
    publish_pending(cfg, table, compliance_message)
    keys = topic_keys(kafka_bootstrap, cfg.kafka.topics.alerts)
    assert sorted(keys) == sorted(alerts["alert_id"])
    assert table.unpublished().empty
