"""The job's Prometheus metrics from what a micro-batch reports, read back as Prometheus would."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.reasons import CATEGORIES, reason_category
from core.validation import check_telemetry
from streaming.metrics import StreamMetrics, kafka_lag

pytestmark = pytest.mark.unit


def samples(metrics: StreamMetrics) -> dict[tuple, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def progress(batch_id: int, end: dict, latest: dict, rows: int = 100) -> SimpleNamespace:
    source = SimpleNamespace(endOffset=json.dumps(end), latestOffset=json.dumps(latest))
    return SimpleNamespace(
        name="battery-telemetry",
        id="q",
        batchId=batch_id,
        inputRowsPerSecond=120.5,
        processedRowsPerSecond=float("nan"),
        durationMs={"triggerExecution": 2500},
        numInputRows=rows,
        sources=[source],
    )


def test_progress_reports_set_rates_duration_lag_and_the_last_batch() -> None:
    metrics = StreamMetrics()
    metrics.record_progress(
        progress(7, {"telemetry": {"0": 90, "1": 50}}, {"telemetry": {"0": 100, "1": 50}})
    )
    got = samples(metrics)
    q = (("query", "battery-telemetry"),)
    assert got[("pitstop_input_rows_per_second", q)] == 120.5
    assert got[("pitstop_processed_rows_per_second", q)] == 0.0  # NaN before any rows
    assert got[("pitstop_batch_duration_seconds_count", q)] == 1
    assert got[("pitstop_batch_duration_seconds_sum", q)] == 2.5
    assert got[("pitstop_last_batch_id", q)] == 7
    lag = (("partition", "0"), ("topic", "telemetry"))
    assert got[("pitstop_kafka_lag", lag)] == 10
    assert got[("pitstop_kafka_lag", (("partition", "1"), ("topic", "telemetry")))] == 0


def test_kafka_lag_ignores_sources_that_are_not_kafka() -> None:
    assert kafka_lag('{"sourceVersion":1,"reservoirVersion":3}', None) == []
    assert kafka_lag("not json", "{}") == []


def test_batch_counts_feed_quarantine_alerts_models_and_latency() -> None:
    metrics = StreamMetrics()
    metrics.record_quarantined({"not_json": 2, "late": 1})
    metrics.record_quarantined({"not_json": 1})
    metrics.record_alerts("battery", 3, 1)
    metrics.record_alerts("compliance", 2)
    champion = SimpleNamespace(name="battery-cycles-rnn", version="1", role="champion")
    metrics.record_models([champion])
    moved = SimpleNamespace(name="battery-cycles-rnn", version="2", role="champion")
    metrics.record_models([moved])
    committed = 1_700_000_100.0
    # 40 readings sent 2 s before the commit, 10 sent 20 s before it (epoch ms, count).
    metrics.record_latency([(1_700_000_098_000.0, 40.0), (1_700_000_080_000.0, 10.0)], committed)
    got = samples(metrics)
    assert got[("pitstop_quarantined_total", (("reason", "not_json"),))] == 3
    assert got[("pitstop_quarantined_total", (("reason", "late"),))] == 1
    assert got[("pitstop_alerts_opened_total", (("kind", "battery"),))] == 3
    assert got[("pitstop_alerts_closed_total", (("kind", "battery"),))] == 1
    assert got[("pitstop_alerts_opened_total", (("kind", "compliance"),))] == 2
    versions = {k[1] for k in got if k[0] == "pitstop_model_version_info"}
    assert versions == {(("name", "battery-cycles-rnn"), ("role", "champion"), ("version", "2"))}
    bucket = "pitstop_event_to_alert_seconds_bucket"
    assert got[(bucket, (("le", "2.0"),))] == 40
    assert got[(bucket, (("le", "15.0"),))] == 40
    assert got[(bucket, (("le", "20.0"),))] == 50
    assert got[(bucket, (("le", "+Inf"),))] == 50
    assert got[("pitstop_event_to_alert_seconds_sum", ())] == pytest.approx(40 * 2 + 10 * 20)


def _reading(**changes) -> str:
    reading = {
        "schema_version": 1,
        "car_id": "C1",
        "battery_id": "B1",
        "date": "2024-01-01",
        "battery_age_days": 10,
        "number_of_trips": 2,
        "daily_trip_duration": 1.5,
        "daily_cycles_used": 0.8,
        "lifetime_cycles_used": 100.0,
        "battery_rated_cycles": 1000.0,
    }
    reading.update(changes)
    return json.dumps({k: v for k, v in reading.items() if v is not ...})


@pytest.mark.parametrize(
    ("raw", "category"),
    [
        (b"x" * 70_000, "oversize"),
        (None, "empty"),
        (b"\xff\xfe", "not_json"),
        ("{nope", "not_json"),
        ("[1, 2]", "not_json"),
        (_reading(battery_id=...), "missing_field"),
        (_reading(battery_id=None), "missing_field"),
        (_reading(battery_id=" "), "missing_field"),
        (_reading(number_of_trips=1.5), "wrong_type"),
        (_reading(date="01/02/2024"), "wrong_type"),
        (_reading(daily_trip_duration=30.0), "out_of_range"),
        (_reading(schema_version=2), "schema_version"),
    ],
)
def test_every_validator_reason_falls_in_its_category(raw, category) -> None:
    reason = check_telemetry(raw).reason
    assert reason is not None
    assert reason_category(reason) == category


def test_state_and_note_reasons_have_categories_and_unknown_ones_are_other() -> None:
    day = dt.date(2024, 1, 1)
    assert reason_category(f"late: {day} is more than 14 days before ...") == "late"
    assert reason_category("duplicate") == "duplicate"
    assert reason_category("note text is empty") == "unreadable_note"
    assert reason_category("something new") == "other" and "other" in CATEGORIES
    assert len(CATEGORIES) == len(set(CATEGORIES)) <= 12  # bounded label values
