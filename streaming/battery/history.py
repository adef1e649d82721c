"""Each battery's recent history in Spark state: a reading's fate and its model window.

One state value per battery (`transformWithState`, RocksDB) holds the last
`window_days + late_after_days` days it reported, as a packed array, and the first day it
ever reported. A micro-batch's readings of the battery are decided against that state --
what *earlier* micro-batches stored -- exactly as the Delta lookup of stream v1 decided
them:

- more than `late_after_days` before the battery's latest stored reading: `late`;
- a (battery, date) already stored from another record, or earlier in this batch (the
  lowest Kafka offset wins): `duplicate`;
- the very record already stored (a source re-delivered it, e.g. after a migration):
  `stored`, neither stored nor quarantined again;
- else `new`: stored, and emitted with its window of daily cycles (parked days 0) and
  aligned health signals (NaN where none), built like the training windows of
  `models.features`: from the battery's first day or `window_days` back, whichever is later.

The state is versioned with the micro-batch, so a batch replayed after a crash sees the
state it saw the first time. Batteries that stop reporting expire after `state_ttl_days`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from pyspark.sql import Row
from pyspark.sql import types as T
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle

from models.features import HEALTH_COLUMNS

# Packed layout of one stored day. The layout number is stored with the value: a change of
# fields gets a new number, and old values can still be read.
STATE_LAYOUT = 1
DAY_DTYPE = np.dtype(
    [("day", "<i4"), ("source", "<i8"), ("cycles", "<f8")] + [(s, "<f8") for s in HEALTH_COLUMNS]
)
STATE_SCHEMA = T.StructType(
    [
        T.StructField("layout", T.IntegerType()),
        T.StructField("first_day", T.IntegerType()),
        T.StructField("days", T.BinaryType()),
    ]
)
# The grouping key of rows that broke the contract: they pass through without state. No
# battery can have it (the contract wants a non-empty battery_id).
QUARANTINE_KEY = ""
_EPOCH = dt.date(1970, 1, 1).toordinal()

NEW, REJECTED, STORED = "new", "rejected", "stored"


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01."""
    return day.toordinal() - _EPOCH


def day_date(number: int) -> dt.date:
    """The date of a `day_number`."""
    return dt.date.fromordinal(int(number) + _EPOCH)


@dataclass(frozen=True)
class HistoryRules:
    """How far back a battery's readings matter."""

    window_days: int
    late_after_days: int

    @property
    def reach(self) -> int:
        """Days kept per battery: a window behind the oldest reading that is still on time."""
        return self.window_days + self.late_after_days


@dataclass(frozen=True)
class BatteryHistory:
    """A battery's stored days (DAY_DTYPE, sorted by day) and the first day it reported."""

    first_day: int
    days: np.ndarray

    @property
    def latest(self) -> int:
        return int(self.days["day"][-1])


class Reading(NamedTuple):
    """What the history needs of one valid reading."""

    day: int
    source: int  # hash of (topic, partition, offset): the record's identity
    order: tuple  # (topic, partition, offset): the lowest wins a duplicate
    cycles: float
    health: tuple  # HEALTH_COLUMNS values, None where absent


class Outcome(NamedTuple):
    """A reading's fate; a new one carries its window (cycles, and health signal-major)."""

    fate: str
    reason: str | None = None
    first_seen: bool = False
    window: bytes | None = None
    health: bytes | None = None


def advance_history(
    history: BatteryHistory | None, readings: Sequence[Reading], rules: HistoryRules
) -> tuple[BatteryHistory | None, list[Outcome]]:
    """Decide a micro-batch's readings of one battery; returns (new history or None when it
    is unchanged, one outcome per reading in the given order)."""
    latest = history.latest if history is not None else None
    stored = (
        dict(zip(history.days["day"].tolist(), history.days["source"].tolist(), strict=True))
        if history is not None
        else {}
    )
    outcomes: list[Outcome | None] = [None] * len(readings)
    taken: set[int] = set()
    fresh: list[int] = []
    for index in sorted(range(len(readings)), key=lambda i: readings[i].order):
        reading = readings[index]
        if latest is not None and reading.day < latest - rules.late_after_days:
            outcomes[index] = Outcome(REJECTED, _late_reason(reading.day, latest, rules))
        elif reading.day in stored:
            same = stored[reading.day] == reading.source
            outcomes[index] = Outcome(STORED) if same else Outcome(REJECTED, "duplicate")
        elif reading.day in taken:
            outcomes[index] = Outcome(REJECTED, "duplicate")
        else:
            taken.add(reading.day)
            fresh.append(index)
    if not fresh:
        return None, outcomes  # type: ignore[return-value]
    added = np.array(
        [
            (readings[i].day, readings[i].source, readings[i].cycles, *readings[i].health)
            for i in fresh
        ],
        dtype=DAY_DTYPE,
    )
    days = added if history is None else np.concatenate([history.days, added])
    days = days[np.argsort(days["day"], kind="stable")]
    first_day = (
        int(days["day"][0]) if history is None else min(history.first_day, int(added["day"].min()))
    )
    windows = _windows(days, first_day, [readings[i].day for i in fresh], rules.window_days)
    earliest = min(fresh, key=lambda i: readings[i].day)
    for index, (cycles, health) in zip(fresh, windows, strict=True):
        outcomes[index] = Outcome(NEW, None, history is None and index == earliest, cycles, health)
    # Windows first, trimming after: an out-of-order reading of this batch may need days
    # that the batch's newest reading pushes out of reach.
    keep = days["day"] > int(days["day"][-1]) - rules.reach
    return BatteryHistory(first_day, days[keep]), outcomes  # type: ignore[return-value]


def _late_reason(day: int, latest: int, rules: HistoryRules) -> str:
    return (
        f"late: {day_date(day).isoformat()} is more than {rules.late_after_days} days before "
        f"the battery's latest reading {day_date(latest).isoformat()}"
    )


def _windows(
    days: np.ndarray, first_day: int, ends: list[int], window_days: int
) -> list[tuple[bytes, bytes]]:
    """(daily cycles, health signal-major) of the window ending on each of `ends`."""
    starts = [max(first_day, end - window_days + 1) for end in ends]
    low, high = min(starts), max(ends)
    span = days[(days["day"] >= low) & (days["day"] <= high)]
    slots = span["day"] - low
    cycles = np.zeros(high - low + 1)
    cycles[slots] = span["cycles"]
    health = np.full((len(HEALTH_COLUMNS), high - low + 1), np.nan)
    for row, signal in enumerate(HEALTH_COLUMNS):
        health[row, slots] = span[signal]
    return [
        (cycles[s - low : e - low + 1].tobytes(), health[:, s - low : e - low + 1].tobytes())
        for s, e in zip(starts, ends, strict=True)
    ]


def encode_history(history: BatteryHistory) -> tuple:
    """The state value (STATE_SCHEMA) of a history."""
    return (STATE_LAYOUT, history.first_day, history.days.tobytes())


def decode_history(value: tuple | None) -> BatteryHistory | None:
    """A history from its state value (None: the battery has no state)."""
    if value is None:
        return None
    layout, first_day, days = value
    if layout != STATE_LAYOUT:
        raise ValueError(f"Battery state layout {layout} is not one this job can read.")
    return BatteryHistory(int(first_day), np.frombuffer(days, dtype=DAY_DTYPE))


class BatteryHistoryProcessor(StatefulProcessor):
    """`transformWithState` processor over rows of `readings.history_input`.

    Emits every input row once, with `fate`, `first_seen` and, for a new reading, its
    window (`history_output_schema`).
    """

    def __init__(self, rules: HistoryRules, ttl_ms: int, input_columns: Sequence[str]) -> None:
        self._rules, self._ttl_ms = rules, ttl_ms
        names = list(input_columns)
        # Rows are tuples: fields by position, looked up once (Row's by-name access is a
        # linear search).
        self._at = {name: names.index(name) for name in names}
        self._passed = names[2:]  # everything but the grouping key and the record hash
        self._out = Row(*self._passed, "fate", "first_seen", "window", "health_window")
        self._health = [self._at[s] for s in HEALTH_COLUMNS]

    def init(self, handle: StatefulProcessorHandle) -> None:
        self._state = handle.getValueState("history", STATE_SCHEMA, self._ttl_ms)

    def handleInputRows(self, key: Any, rows: Iterator[Row], timerValues: Any) -> Iterator[Row]:
        if key[0] == QUARANTINE_KEY:
            for row in rows:
                yield self._out(*row[2:], REJECTED, False, None, None)
            return
        rows = list(rows)
        at = self._at
        readings = [
            Reading(
                day_number(row[at["date"]]),
                row[1],
                (row[at["topic"]], row[at["partition"]], row[at["offset"]]),
                float(row[at["daily_cycles_used"]]),
                tuple(row[i] for i in self._health),
            )
            for row in rows
        ]
        history, outcomes = advance_history(
            decode_history(self._state.get()), readings, self._rules
        )
        if history is not None:
            self._state.update(encode_history(history))
        for row, outcome in zip(rows, outcomes, strict=True):
            reason = outcome.reason if outcome.fate == REJECTED else row[at["reason"]]
            values = list(row[2:])
            values[at["reason"] - 2] = reason
            yield self._out(
                *values, outcome.fate, outcome.first_seen, outcome.window, outcome.health
            )

    def handleInitialState(self, key: Any, initialState: Row, timerValues: Any) -> None:
        """Seed a battery from its stored telemetry (`readings.seed_rows`) on a new checkpoint."""
        days = np.array(
            [
                (day_number(d["date"]), d["source"], d["cycles"], *[d[s] for s in HEALTH_COLUMNS])
                for d in initialState["days"]
            ],
            dtype=DAY_DTYPE,
        )
        days = days[np.argsort(days["day"], kind="stable")]
        self._state.update(
            encode_history(BatteryHistory(day_number(initialState["first_day"]), days))
        )

    def close(self) -> None:
        pass
