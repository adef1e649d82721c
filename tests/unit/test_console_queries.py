"""The console's pure parts: page summaries, live accuracy, metrics parsing, chart JSON."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from apps.console import charts, queries
from apps.console.pages.quarantine import quarantine_csv
from apps.console.stream_status import histogram_quantile, parse_metrics

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc


def alerts_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "alert_id": ["a", "b", "c", "d"],
            "battery_id": ["B1", "B2", "B3", "B4"],
            "car_id": ["C1", "C2", "C3", "C3"],
            "status": ["open", "open", "acknowledged", "open"],
            "alert_date": [dt.date(2024, 3, 1), dt.date(2024, 3, 1), dt.date(2024, 3, 2), None],
            "predicted_failure_date": [
                dt.date(2024, 3, 20),
                dt.date(2024, 3, 10),
                dt.date(2024, 3, 5),
                None,
            ],
            "days_to_failure": [19, 9, 3, None],
        }
    )


def test_open_alerts_soonest_failure_first_and_undated_last():
    got = queries.open_alerts_by_failure(alerts_frame())
    assert list(got["battery_id"]) == ["B2", "B1", "B4"]
    assert list(queries.open_alerts_by_failure(alerts_frame(), limit=1)["battery_id"]) == ["B2"]


def test_status_counts_known_statuses_first():
    counts = queries.status_counts(alerts_frame())
    assert counts.to_dict("records") == [
        {"status": "open", "alerts": 3},
        {"status": "acknowledged", "alerts": 1},
    ]
    assert queries.status_counts(pd.DataFrame()).empty


def test_alerts_opened_per_day_counts_by_reading_date():
    opened = queries.alerts_opened_per_day(alerts_frame())
    assert list(opened["opened"]) == [2, 1]
    assert list(opened["day"]) == [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")]


def test_quarantine_rate_per_bucket_and_overall():
    start = dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    stored = pd.Series([start + dt.timedelta(minutes=m) for m in (0, 0, 0, 1, 1, 2)])
    rejected = pd.Series([start, start + dt.timedelta(minutes=2)])
    rates = queries.quarantine_rate(stored, rejected)
    assert list(rates["stored"]) == [3, 2, 1]
    assert list(rates["quarantined"]) == [1, 0, 1]
    assert rates["rate"].round(3).tolist() == [0.25, 0.0, 0.5]
    assert queries.overall_rate(rates) == pytest.approx(2 / 8)
    empty = queries.quarantine_rate(pd.Series([], dtype=object), pd.Series([], dtype=object))
    assert empty.empty and queries.overall_rate(empty) is None


def test_bucket_width_keeps_buckets_few():
    start = pd.Timestamp("2024-01-01", tz="UTC")
    assert queries.bucket_width(start, start + pd.Timedelta(minutes=30)) == "1min"
    assert queries.bucket_width(start, start + pd.Timedelta(days=2)) == "1h"
    assert queries.bucket_width(start, start + pd.Timedelta(days=400)) == "7D"


def test_quarantine_by_reason_and_latest():
    at = pd.Timestamp("2024-05-01 10:00", tz="UTC")
    frame = pd.DataFrame(
        {
            "reason": ["not_json", "not_json", "missing_field"],
            "ingested_at": [at, at + pd.Timedelta(minutes=5), at],
            "partition": [0, 0, 1],
            "offset": [1, 2, 3],
        }
    )
    counts = queries.quarantine_by_reason(frame)
    assert counts["count"].sum() == 3
    assert set(counts["reason"]) == {"not_json", "missing_field"}
    assert list(queries.latest_quarantine(frame, 2)["offset"]) == [2, 3]


def test_filter_alerts_by_every_field():
    frame = alerts_frame()
    assert list(queries.filter_alerts(frame, car="C3")["battery_id"]) == ["B3", "B4"]
    assert list(queries.filter_alerts(frame, status="acknowledged")["battery_id"]) == ["B3"]
    got = queries.filter_alerts(frame, since=dt.date(2024, 3, 2), until=dt.date(2024, 3, 2))
    assert list(got["battery_id"]) == ["B3"]
    assert list(queries.filter_alerts(frame, battery="B1", car="C1")["alert_id"]) == ["a"]


def test_forecast_band_uses_the_widest_quantiles():
    columns = ["forecast", "daily_q50", "daily_q90", "daily_q10", "daily_qx", "cum_q90"]
    quantiles = queries.quantile_columns(columns)
    assert quantiles == [(10, "daily_q10"), (50, "daily_q50"), (90, "daily_q90")]
    row = pd.Series({"daily_q10": np.array([1.0, 2.0]), "daily_q90": [3.0, 4.0]})
    assert queries.forecast_band(row, quantiles) == ("10-90% band", [1.0, 2.0], [3.0, 4.0])
    assert queries.forecast_band(pd.Series({"forecast": [1.0]}), []) == ("", [], [])


def test_latest_forecast_row_is_the_champions_newest():
    frame = pd.DataFrame(
        {
            "date": [dt.date(2024, 1, 1), dt.date(2024, 1, 3), dt.date(2024, 1, 2)],
            "model_role": ["champion", "shadow", "champion"],
            "model_version": ["1", "2", "1"],
        }
    )
    assert queries.latest_forecast_row(frame)["date"] == dt.date(2024, 1, 2)
    assert queries.latest_forecast_row(frame, "shadow")["model_version"] == "2"
    assert queries.latest_forecast_row(pd.DataFrame()) is None


def test_live_summary_keeps_each_versions_latest_day():
    metrics = pd.DataFrame(
        {
            "model_name": ["m", "m", "m"],
            "model_version": ["1", "1", "2"],
            "model_role": ["champion", "champion", "shadow"],
            "day": pd.to_datetime(["2024-06-01", "2024-06-02", "2024-06-01"]),
            "mae": [0.1, 0.2, 0.3],
            "nrmse": [0.01, 0.02, 0.03],
            "pairs": [10, 20, 30],
        }
    )
    summary = queries.live_summary(metrics)
    assert summary[["model_version", "mae"]].values.tolist() == [["1", 0.2], ["2", 0.3]]
    assert queries.live_summary(metrics.iloc[0:0]).empty


def test_latest_health_per_model():
    at = pd.Timestamp("2024-06-01", tz="UTC")
    health = pd.DataFrame(
        {
            "checked_at": [at, at + pd.Timedelta(hours=1), at],
            "model_name": ["rnn", "rnn", "automl"],
            "status": ["ok", "degraded", "unknown"],
        }
    )
    latest = queries.latest_health(health)
    assert dict(zip(latest["model_name"], latest["status"], strict=True)) == {
        "rnn": "degraded",
        "automl": "unknown",
    }


def test_lag_per_partition_against_the_committed_offsets():
    lag = queries.lag_per_partition({"t": {0: 10, 1: 5}}, {"t": {0: 12, 1: 5, 2: 7}})
    assert lag["lag"].tolist() == [2, 0, 7]


def test_batch_rates_from_checkpoint_batches():
    start = pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    batches = pd.DataFrame(
        {
            "batch": [1, 2],
            "started": [start, start + pd.Timedelta(seconds=4)],
            "committed": [start + pd.Timedelta(seconds=2), start + pd.Timedelta(seconds=5)],
            "rows": [100.0, 400.0],
        }
    )
    rates = queries.batch_rates(batches)
    assert rates["duration_s"].tolist() == [2.0, 1.0]
    assert rates["processed_per_s"].tolist() == [50.0, 400.0]
    assert np.isnan(rates["input_per_s"].iloc[0]) and rates["input_per_s"].iloc[1] == 100.0


def test_chart_json_cannot_close_its_script_element():
    frame = pd.DataFrame({"status": ["</script><script>alert(1)</script>"], "alerts": [1]})
    text = charts.to_json(charts.status_chart(frame))
    assert "<" not in text and ">" not in text
    assert json.loads(text)["data"][0]["x"] == ["</script><script>alert(1)</script>"]


def test_quarantine_csv_defuses_spreadsheet_formulas():
    frame = pd.DataFrame(
        [
            {
                "reason": "not_json",
                "source": "battery-telemetry",
                "key": "=HYPERLINK(1)",
                "topic": "battery-telemetry",
                "partition": 0,
                "offset": 7,
                "kafka_timestamp": None,
                "ingested_at": None,
                "payload_text": "<script>alert(1)</script>",
            }
        ]
    )
    lines = quarantine_csv(frame).splitlines()
    assert lines[0].startswith("reason,source,key")
    assert "'=HYPERLINK(1)" in lines[1] and "<script>alert(1)</script>" in lines[1]


def exposition() -> str:
    """Text exposition as prometheus_client itself writes it, with the stream's names."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
    from prometheus_client.exposition import generate_latest

    registry = CollectorRegistry()
    Gauge("pitstop_input_rows_per_second", "in", registry=registry).set(120.5)
    lag = Gauge("pitstop_kafka_lag", "lag", ["partition"], registry=registry)
    lag.labels("0").set(3)
    lag.labels("1").set(0)
    quarantined = Counter("pitstop_quarantined", "q", ["reason"], registry=registry)
    quarantined.labels("not_json").inc(2)
    Counter("pitstop_alerts_opened", "o", registry=registry).inc(5)
    duration = Histogram(
        "pitstop_batch_duration_seconds", "d", buckets=(1, 2, 4, 8), registry=registry
    )
    for value in (0.5, 1.5, 1.5, 3.0):
        duration.observe(value)
    Info("pitstop_model_version", "m", registry=registry).info({"name": "rnn", "version": "3"})
    Gauge("process_other", "not ours", registry=registry).set(1)
    return generate_latest(registry).decode()


def test_parse_metrics_keeps_pitstop_families():
    families = parse_metrics(exposition())
    assert "process_other" not in families
    assert families["pitstop_input_rows_per_second"].value() == 120.5
    assert families["pitstop_kafka_lag"].by_label("partition") == {"0": 3.0, "1": 0.0}
    assert families["pitstop_quarantined"].by_label("reason", "_total") == {"not_json": 2.0}
    assert families["pitstop_alerts_opened"].value("_total") == 5.0
    info = families["pitstop_model_version_info"].samples[0][1]
    assert info == {"name": "rnn", "version": "3"}


def test_histogram_quantile_interpolates_inside_buckets():
    duration = parse_metrics(exposition())["pitstop_batch_duration_seconds"]
    # 4 observations: 1 in (0,1], 2 in (1,2], 1 in (2,4]; the median sits at 2 of 4.
    assert histogram_quantile(duration, 0.5) == pytest.approx(1.5)
    assert histogram_quantile(duration, 1.0) == pytest.approx(4.0)


def test_alert_latency_from_the_triggering_readings_kafka_time():
    sent = pd.Timestamp("2024-05-01 10:00:00", tz="UTC")
    alerts = pd.DataFrame(
        {
            "battery_id": ["B1", "B2"],
            "alert_date": [dt.date(2024, 3, 1), dt.date(2024, 3, 2)],
            "created_at": [sent + pd.Timedelta(seconds=7), sent + pd.Timedelta(seconds=9)],
        }
    )
    readings = pd.DataFrame(
        {
            "battery_id": ["B1", "B1", "B3"],
            "date": [dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 2)],
            "kafka_timestamp": [sent, sent, sent],
        }
    )
    assert queries.alert_latency(alerts, readings).tolist() == [7.0]
    assert queries.alert_latency(alerts.iloc[0:0], readings).empty
