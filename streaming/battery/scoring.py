"""Forecast every new reading from the window the state step emitted, with each model.

One Arrow pass over the state step's output: every row goes on (`kind` reading, rejected or
stored) and each new reading gains one `forecast` row per model -- the 30-day forecast, its
quantiles (daily and running total), the failure risk, days and date of failure, model
name, version and role. Any forecaster of the contract scores here, whatever its family; a
version registered before quantiles gives the point forecast alone (quantiles and risk
null), and its alerts follow the forecast's running sum instead of the risk. Windows are
built from the stored days the state step packed (models.forecasting.features.
windows_from_days, the training windows' rules), a batch of readings per model call, and
never leave Python: a window with its health arrays is up to 300 doubles, a forecast 30.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import Accumulator
from pyspark.sql import DataFrame
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from models.forecasting.distribution import (
    CUM_COLUMNS,
    DAILY_COLUMNS,
    RISK_COLUMN,
    ForecastDistribution,
)
from models.forecasting.features import (
    HEALTH_HISTORY_SUFFIX,
    HISTORY_COLUMN,
    MODEL_INPUT_COLUMNS,
    WINDOW_DAY,
    failure_days_from_totals,
    forecast_failure_days,
    windows_from_days,
)
from streaming.battery.history import NEW
from streaming.battery.readings import PARSED_SCHEMA
from streaming.model_refs import ModelRef, RegistryTarget, cached_model, health_inputs

READING, FORECAST = "reading", "forecast"

FORECAST_FIELDS = [
    T.StructField("forecast", T.ArrayType(T.DoubleType())),
    *[T.StructField(c, T.ArrayType(T.DoubleType())) for c in (*DAILY_COLUMNS, *CUM_COLUMNS)],
    T.StructField(RISK_COLUMN, T.DoubleType()),
    T.StructField("days_to_failure", T.IntegerType()),
    T.StructField("predicted_failure_date", T.DateType()),
    T.StructField("model_name", T.StringType()),
    T.StructField("model_version", T.StringType()),
    T.StructField("model_role", T.StringType()),
]
# A micro-batch after scoring: `kind` says which table a row is for (reading -> telemetry,
# rejected -> quarantine, forecast -> battery_forecasts; stored -> none, counted only).
BATCH_SCHEMA = T.StructType(
    [T.StructField("kind", T.StringType())]
    + PARSED_SCHEMA.fields
    + [T.StructField("first_seen", T.BooleanType())]
    + FORECAST_FIELDS
)
_ARROW = to_arrow_schema(BATCH_SCHEMA, timezone="UTC")
_PARSED = PARSED_SCHEMA.fieldNames()


def score_readings(
    decided: DataFrame,
    refs: list[ModelRef],
    target: RegistryTarget,
    loads: Accumulator | None = None,
) -> DataFrame:
    """The state step's rows (`readings.HISTORY_SCHEMA`) as BATCH_SCHEMA rows, forecasts added."""
    health = health_inputs(refs)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield passthrough_rows(batch)
            fresh = batch.filter(pc.equal(batch.column("fate"), NEW))
            if fresh.num_rows:
                frame = model_input(fresh, health)
                for ref in refs:
                    model = cached_model(ref, target, loads, _load_forecaster)
                    wanted = ["battery_id", "car_id", "date", *MODEL_INPUT_COLUMNS, *ref.inputs]
                    yield forecast_rows(fresh, ref, model.predict_distribution(frame[wanted]))

    return decided.mapInArrow(score, BATCH_SCHEMA)


def _load_forecaster(uri: str) -> Any:
    from models.forecasting.loader import load_forecaster

    return load_forecaster(uri)


def passthrough_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Every decided row as it is, `kind` its fate (a new reading is a `reading`)."""
    fate = batch.column("fate")
    kind = pc.if_else(pc.equal(fate, NEW), pa.scalar(READING), fate)
    nulls = {
        f.name: pa.nulls(batch.num_rows, type=_ARROW.field(f.name).type) for f in FORECAST_FIELDS
    }
    return _batch(batch, kind, batch.column("first_seen"), nulls)


def forecast_rows(
    fresh: pa.RecordBatch, ref: ModelRef, dist: ForecastDistribution | np.ndarray
) -> pa.RecordBatch:
    """One `forecast` row per new reading: the forecast, its quantiles and risk (null when the
    model has none), days and date of failure, model."""
    if not isinstance(dist, ForecastDistribution):
        dist = ForecastDistribution(np.asarray(dist, dtype=np.float64))
    forecast = dist.point
    rows, horizon = forecast.shape
    lifetime = fresh.column("lifetime_cycles_used").to_numpy(zero_copy_only=False)
    rated = fresh.column("battery_rated_cycles").to_numpy(zero_copy_only=False)
    totals = dist.shown_cumulative()
    # The day the median running total reaches the rating (as likely as not failed by then);
    # a version without quantiles: the point forecast's running sum, as before.
    days = (
        forecast_failure_days(lifetime, rated, forecast)
        if totals is None
        else failure_days_from_totals(lifetime, rated, totals[:, :, 1])
    )
    known = ~np.isnan(days)
    whole = np.where(known, days, 0).astype("int64")
    dates = fresh.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    values = {
        "forecast": _lists(forecast),
        **_quantile_lists(dist, rows),
        RISK_COLUMN: (
            pa.nulls(rows, pa.float64())
            if dist.risk is None
            else pa.array(dist.risk, pa.float64(), from_pandas=True)
        ),
        "days_to_failure": pa.array(whole.astype("int32"), mask=~known),
        "predicted_failure_date": pa.array(
            dates + whole.astype("timedelta64[D]"), pa.date32(), mask=~known
        ),
        "model_name": pa.array([ref.name] * rows, pa.string()),
        "model_version": pa.array([ref.version] * rows, pa.string()),
        "model_role": pa.array([ref.role] * rows, pa.string()),
    }
    kind = pa.array([FORECAST] * rows, pa.string())
    return _batch(fresh, kind, pa.nulls(rows, pa.bool_()), values)


def _lists(values: np.ndarray) -> pa.Array:
    """(rows, horizon) doubles as one Arrow list array, without a Python loop."""
    rows, horizon = values.shape
    return pa.ListArray.from_arrays(
        pa.array(np.arange(0, rows * horizon + 1, horizon, dtype=np.int32)),
        pa.array(np.ascontiguousarray(values, dtype=np.float64).ravel()),
        type=_ARROW.field("forecast").type,
    )


def _quantile_lists(dist: ForecastDistribution, rows: int) -> dict[str, pa.Array]:
    """The shown daily and running-total quantiles as list arrays (nulls without them)."""
    out = {}
    for columns, values in (
        (DAILY_COLUMNS, dist.shown_daily()),
        (CUM_COLUMNS, dist.shown_cumulative()),
    ):
        for k, column in enumerate(columns):
            out[column] = (
                pa.nulls(rows, _ARROW.field(column).type)
                if values is None
                else _lists(values[:, :, k])
            )
    return out


def _batch(
    source: pa.RecordBatch, kind: pa.Array, first_seen: pa.Array, extra: dict
) -> pa.RecordBatch:
    columns = {"kind": kind, "first_seen": first_seen, **extra}
    arrays = []
    for field in _ARROW:
        array = columns[field.name] if field.name in columns else source.column(field.name)
        arrays.append(array if array.type == field.type else pc.cast(array, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=_ARROW)


def _packed(binary: pa.Array, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A binary column of packed `dtype` records as (all records, records per row)."""
    binary = binary.cast(pa.large_binary()) if binary.type != pa.large_binary() else binary
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[
        binary.offset : binary.offset + len(binary) + 1
    ]
    data = binary.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0] : offsets[-1]].copy()
    return raw.view(dtype), np.diff(offsets) // dtype.itemsize


def model_input(fresh: pa.RecordBatch, health: list[str]) -> pd.DataFrame:
    """The forecast contract's input rows (models.forecasting.features) for new readings with
    windows.

    `health` are the `<signal>_history` arrays some model reads; no other is built.
    """
    days, counts = _packed(fresh.column("window"), WINDOW_DAY)
    ends = fresh.column("date").cast(pa.int32()).to_numpy(zero_copy_only=False)
    starts = fresh.column("window_start").to_numpy(zero_copy_only=False)
    signals = [name.removesuffix(HEALTH_HISTORY_SUFFIX) for name in health]
    windows = windows_from_days(days, counts, starts, ends, signals)
    frame = pd.DataFrame(
        {
            "battery_id": fresh.column("battery_id").to_pylist(),
            "car_id": fresh.column("car_id").to_pylist(),
            "date": fresh.column("date").to_pandas(),
            HISTORY_COLUMN: windows.pop(HISTORY_COLUMN),
            "lifetime_cycles_used": fresh.column("lifetime_cycles_used").to_numpy(False),
            "battery_rated_cycles": fresh.column("battery_rated_cycles").to_numpy(False),
            "battery_age_days": fresh.column("battery_age_days").to_numpy(False).astype(np.float64),
        }
    )
    for name, arrays in windows.items():
        frame[name] = arrays
    return frame
