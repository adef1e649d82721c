"""What the console's pages show, as pure functions over DataFrames (no I/O).

The routes read tables through the cache and pass the frames here; tests call these
directly on small frames.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd

# Bucket widths for counts over time, smallest first: the first that gives at most
# MAX_BUCKETS buckets over the data's span is used.
BUCKETS: tuple[tuple[str, pd.Timedelta], ...] = (
    ("1min", pd.Timedelta(minutes=1)),
    ("5min", pd.Timedelta(minutes=5)),
    ("15min", pd.Timedelta(minutes=15)),
    ("1h", pd.Timedelta(hours=1)),
    ("6h", pd.Timedelta(hours=6)),
    ("1D", pd.Timedelta(days=1)),
    ("7D", pd.Timedelta(days=7)),
)
MAX_BUCKETS = 90
STATUS_ORDER = ("open", "acknowledged", "replaced", "closed")
# The daily-cycle quantiles the forecast contract stores (`daily_q10`, `daily_q50`, ...).
QUANTILE_COLUMN = re.compile(r"^daily_q(\d{1,2})$")


def _timestamps(values: pd.Series) -> pd.Series:
    """UTC timestamps of a column that may be naive or zoned."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dropna()


def bucket_width(start: pd.Timestamp, end: pd.Timestamp) -> str:
    """The pandas frequency that splits [start, end] into at most MAX_BUCKETS buckets."""
    span = max(end - start, pd.Timedelta(0))
    for freq, width in BUCKETS:
        if span / width <= MAX_BUCKETS:
            return freq
    return BUCKETS[-1][0]


def open_alerts_by_failure(alerts: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """Open battery alerts, soonest predicted failure first (no date last)."""
    if alerts.empty:
        return alerts
    rows = alerts[alerts["status"] == "open"]
    rows = rows.sort_values(
        ["predicted_failure_date", "days_to_failure", "battery_id"], na_position="last"
    )
    return rows.head(limit) if limit else rows


def status_counts(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts per status (`status`, `alerts`), the known statuses first."""
    if alerts.empty:
        return pd.DataFrame({"status": [], "alerts": []})
    counts = alerts["status"].value_counts()
    known = [s for s in STATUS_ORDER if s in counts.index]
    order = known + sorted(s for s in counts.index if s not in STATUS_ORDER)
    return pd.DataFrame({"status": order, "alerts": [int(counts[s]) for s in order]})


def alerts_opened_per_day(alerts: pd.DataFrame) -> pd.DataFrame:
    """Alerts opened per alert date (the date of the reading that triggered each)."""
    if alerts.empty:
        return pd.DataFrame({"day": [], "opened": []})
    days = pd.to_datetime(alerts["alert_date"]).dt.normalize()
    counts = days.value_counts().sort_index()
    return pd.DataFrame({"day": counts.index, "opened": counts.to_numpy()})


def quarantine_rate(stored_at: pd.Series, quarantined_at: pd.Series) -> pd.DataFrame:
    """Share of messages quarantined per ingest-time bucket: `bucket`, `stored`,
    `quarantined`, `rate` (quarantined / all). Ingest time, because a rejected message
    often has no valid event date."""
    stored, rejected = _timestamps(stored_at), _timestamps(quarantined_at)
    both = pd.concat([stored, rejected])
    if both.empty:
        return pd.DataFrame({"bucket": [], "stored": [], "quarantined": [], "rate": []})
    freq = bucket_width(both.min(), both.max())
    kept = stored.dt.floor(freq).value_counts()
    bad = rejected.dt.floor(freq).value_counts()
    frame = pd.DataFrame({"stored": kept, "quarantined": bad}).fillna(0).sort_index()
    frame = frame.astype("int64")
    frame["rate"] = frame["quarantined"] / (frame["stored"] + frame["quarantined"])
    return frame.rename_axis("bucket").reset_index()


def overall_rate(rates: pd.DataFrame) -> float | None:
    """Quarantined share over everything in `rates` (None when there is nothing)."""
    total = rates["stored"].sum() + rates["quarantined"].sum() if not rates.empty else 0
    return float(rates["quarantined"].sum() / total) if total else None


def quarantine_by_reason(quarantine: pd.DataFrame) -> pd.DataFrame:
    """Quarantined messages per ingest-time bucket and reason: `bucket`, `reason`, `count`."""
    if quarantine.empty:
        return pd.DataFrame({"bucket": [], "reason": [], "count": []})
    stamps = pd.to_datetime(quarantine["ingested_at"], utc=True)
    freq = bucket_width(stamps.min(), stamps.max())
    frame = pd.DataFrame({"bucket": stamps.dt.floor(freq), "reason": quarantine["reason"]})
    counts = frame.groupby(["bucket", "reason"]).size().rename("count").reset_index()
    return counts.sort_values(["bucket", "reason"], ignore_index=True)


def latest_quarantine(quarantine: pd.DataFrame, limit: int = 200) -> pd.DataFrame:
    """The newest quarantined messages, newest first."""
    if quarantine.empty:
        return quarantine
    order = [c for c in ("ingested_at", "partition", "offset") if c in quarantine.columns]
    return quarantine.sort_values(order, ascending=False).head(limit)


def filter_alerts(
    alerts: pd.DataFrame,
    *,
    car: str | None = None,
    battery: str | None = None,
    status: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
    date_column: str = "alert_date",
) -> pd.DataFrame:
    """Alerts matching every filter given (exact car/battery/status, date range inclusive)."""
    if alerts.empty:
        return alerts
    keep = pd.Series(True, index=alerts.index)
    if car:
        keep &= alerts["car_id"].astype(str) == car
    if battery and "battery_id" in alerts.columns:
        keep &= alerts["battery_id"].astype(str) == battery
    if status and "status" in alerts.columns:
        keep &= alerts["status"].astype(str) == status
    if (since or until) and date_column in alerts.columns:
        days = pd.to_datetime(alerts[date_column], utc=True).dt.tz_localize(None).dt.normalize()
        if since:
            keep &= days >= pd.Timestamp(since)
        if until:
            keep &= days <= pd.Timestamp(until)
    return alerts[keep]


def quantile_columns(columns: pd.Index | list[str]) -> list[tuple[int, str]]:
    """(percent, column) of the daily forecast quantile columns (`daily_q10`, ...), sorted."""
    found = [(int(m.group(1)), c) for c in columns if (m := QUANTILE_COLUMN.match(str(c)))]
    return sorted(found)


def forecast_band(row: pd.Series, quantiles: list[tuple[int, str]]) -> tuple[str, list, list]:
    """The widest quantile band of a stored forecast row: (label, low, high); empty lists
    when the row has no quantiles."""
    usable = [(p, c) for p, c in quantiles if isinstance(row.get(c), (list, np.ndarray))]
    if len(usable) < 2:
        return "", [], []
    (low_p, low_c), (high_p, high_c) = usable[0], usable[-1]
    low = [float(v) for v in row[low_c]]
    high = [float(v) for v in row[high_c]]
    return f"{low_p}-{high_p}% band", low, high


def latest_forecast_row(forecasts: pd.DataFrame, role: str = "champion") -> pd.Series | None:
    """The newest stored forecast of `role` (by reading date, then scoring time)."""
    if forecasts.empty:
        return None
    rows = forecasts
    if "model_role" in rows.columns:
        rows = rows[rows["model_role"].fillna("champion") == role]
    if rows.empty:
        return None
    order = [c for c in ("date", "scored_at") if c in rows.columns]
    return rows.sort_values(order).iloc[-1]


def live_summary(metrics: pd.DataFrame) -> pd.DataFrame:
    """The latest rolling figures per model, version and role (`live_metrics` rows)."""
    keys = ["model_name", "model_version", "model_role"]
    columns = [*keys, "day", "mae", "nrmse", "pairs"]
    if metrics.empty:
        return pd.DataFrame(columns=columns)
    latest = metrics.sort_values("day").groupby(keys, as_index=False).tail(1)
    return latest[columns].sort_values(keys, ignore_index=True)


def latest_health(health: pd.DataFrame) -> pd.DataFrame:
    """The newest `model_health` verdict per model (the monitor writes one per batch)."""
    if health.empty:
        return health
    newest = health.sort_values("checked_at").groupby("model_name", as_index=False).tail(1)
    return newest.reset_index(drop=True)


def lag_per_partition(
    committed: dict[str, dict[int, int]], ends: dict[str, dict[int, int]]
) -> pd.DataFrame:
    """Messages not yet processed per topic partition: `topic`, `partition`, `committed`,
    `end`, `lag` (end offset minus the last committed batch's offset)."""
    rows = []
    for topic, partitions in sorted(ends.items()):
        for partition, end in sorted(partitions.items()):
            done = committed.get(topic, {}).get(partition, 0)
            rows.append((topic, partition, done, end, max(end - done, 0)))
    return pd.DataFrame(rows, columns=["topic", "partition", "committed", "end", "lag"])


def batch_rates(batches: pd.DataFrame) -> pd.DataFrame:
    """Per committed micro-batch (`batch`, `started`, `committed`, `rows`): its duration and
    processing rate, and the input rate since the previous batch started."""
    if batches.empty:
        return batches.assign(duration_s=[], processed_per_s=[], input_per_s=[])
    frame = batches.sort_values("batch", ignore_index=True)
    duration = (frame["committed"] - frame["started"]).dt.total_seconds().clip(lower=1e-3)
    gap = frame["started"].diff().dt.total_seconds()
    return frame.assign(
        duration_s=duration,
        processed_per_s=frame["rows"] / duration,
        input_per_s=frame["rows"] / gap.where(gap > 0),
    )


def alert_latency(alerts: pd.DataFrame, readings: pd.DataFrame) -> pd.Series:
    """Seconds from each alert's triggering reading reaching Kafka (`kafka_timestamp`) to the
    alert's commit (`created_at`), for the alerts whose reading is in `readings`."""
    if alerts.empty or readings.empty:
        return pd.Series(dtype="float64")
    trigger = readings[["battery_id", "date", "kafka_timestamp"]].assign(
        date=pd.to_datetime(readings["date"])
    )
    opened = alerts[["battery_id", "alert_date", "created_at"]].assign(
        date=pd.to_datetime(alerts["alert_date"])
    )
    joined = opened.merge(trigger, on=["battery_id", "date"])
    created = pd.to_datetime(joined["created_at"], utc=True)
    sent = pd.to_datetime(joined["kafka_timestamp"], utc=True)
    return (created - sent).dt.total_seconds().dropna()
