"""Forecast every new reading from the window the state step emitted, with each model.

One Arrow pass over the state step's output: every row goes on (`kind` reading, rejected or
stored) and each new reading gains one `forecast` row per model -- the 30-day forecast,
days and date of failure, model name, version and role. Windows are built from the stored
days the state step packed (models.forecasting.features.windows_from_days, the training
windows' rules), a batch of readings per model call, and never leave Python: a window with
its health arrays is up to 300 doubles, a forecast 30.
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

from models.forecasting.features import (
    HEALTH_HISTORY_SUFFIX,
    HISTORY_COLUMN,
    MODEL_INPUT_COLUMNS,
    WINDOW_DAY,
    forecast_failure_days,
    windows_from_days,
)
from streaming.battery.history import NEW
from streaming.battery.readings import PARSED_SCHEMA
from streaming.model_refs import ModelRef, RegistryTarget, cached_model, health_inputs

READING, FORECAST = "reading", "forecast"

FORECAST_FIELDS = [
    T.StructField("forecast", T.ArrayType(T.DoubleType())),
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
                    yield forecast_rows(fresh, ref, np.asarray(model.predict(frame[wanted])))

    return decided.mapInArrow(score, BATCH_SCHEMA)


def _load_forecaster(uri: str) -> Any:
    from models.forecasting.pyfunc import load_forecaster

    return load_forecaster(uri)


def passthrough_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Every decided row as it is, `kind` its fate (a new reading is a `reading`)."""
    fate = batch.column("fate")
    kind = pc.if_else(pc.equal(fate, NEW), pa.scalar(READING), fate)
    nulls = {
        f.name: pa.nulls(batch.num_rows, type=_ARROW.field(f.name).type) for f in FORECAST_FIELDS
    }
    return _batch(batch, kind, batch.column("first_seen"), nulls)


def forecast_rows(fresh: pa.RecordBatch, ref: ModelRef, forecast: np.ndarray) -> pa.RecordBatch:
    """One `forecast` row per new reading: the forecast, days and date of failure, model."""
    forecast = np.asarray(forecast, dtype=np.float64)
    rows, horizon = forecast.shape
    days = forecast_failure_days(
        fresh.column("lifetime_cycles_used").to_numpy(zero_copy_only=False),
        fresh.column("battery_rated_cycles").to_numpy(zero_copy_only=False),
        forecast,
    )
    known = ~np.isnan(days)
    whole = np.where(known, days, 0).astype("int64")
    dates = fresh.column("date").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    values = {
        "forecast": pa.ListArray.from_arrays(
            pa.array(np.arange(0, rows * horizon + 1, horizon, dtype=np.int32)),
            pa.array(forecast.ravel()),
            type=_ARROW.field("forecast").type,
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
