"""The `battery_alerts` table through delta-rs: read the few rows a micro-batch needs, MERGE
its changes from the driver with an application transaction, mark published openings.

The table is small and its changes are bounded control data, so the driver commits them
itself: a keyed delta-rs MERGE took ~12 ms against ~2 s for Spark's MERGE of the same
changes (`benchmarks/sink_floor.py`). Each MERGE carries the transaction (app id, batch
id); a replayed micro-batch finds its version committed and changes nothing. Delta-rs
reads `abfss://` paths with the AZURE_* environment variables (object_store's names).
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd
import pyarrow as pa
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from core.lake import filter_expression, on_commit_conflict, sql_string
from streaming.battery.alerts import (
    ALERT_COLUMNS,
    INSERT,
    UPDATED,
    AlertChanges,
    plan_alert_changes,
)
from streaming.tables import ALERT_SCHEMA

log = logging.getLogger(__name__)

_ARROW = to_arrow_schema(ALERT_SCHEMA, timezone="UTC")
_SOURCE = pa.schema([*_ARROW, pa.field("_op", pa.string())])
# Ids a micro-batch's lookup puts in a SQL `IN (...)` at most; beyond, a pyarrow scan with
# the ids as a set: delta-rs overflows its stack (SIGSEGV, the driver dies) on an IN list of
# ~100k strings, which the first micro-batch of a large fleet's backlog holds.
SQL_IN_LIMIT = 1_000


class AlertTable:
    """One job's handle on an alert table, kept warm between micro-batches: `battery_alerts`
    by default, or `compliance_alerts` (its schema given) -- both are outboxes to the car."""

    def __init__(
        self,
        location: str,
        storage_options: dict[str, str] | None = None,
        schema: T.StructType = ALERT_SCHEMA,
    ) -> None:
        self.location = location
        self._options = storage_options
        self._table = None
        self._arrow = to_arrow_schema(schema, timezone="UTC")

    def _fresh(self):
        from deltalake import DeltaTable

        if self._table is None:
            self._table = DeltaTable(self.location, storage_options=self._options)
        else:
            self._table.update_incremental()
        return self._table

    def committed_batch(self, app_id: str) -> int:
        """The last micro-batch `app_id` committed here (-1: none)."""
        version = self._fresh().transaction_version(app_id)
        return -1 if version is None else int(version)

    def rows(self, where: str = "TRUE") -> pd.DataFrame:
        """Stored alerts matching the SQL condition `where`, in the table schema's columns."""
        from deltalake import QueryBuilder

        query = QueryBuilder().register("alerts", self._fresh())
        return self._frame(
            pa.table(query.execute(f"SELECT * FROM alerts WHERE {where}").read_all())
        )

    def _frame(self, found: pa.Table) -> pd.DataFrame:
        # delta-rs answers with string views; the alert schema's plain strings convert to
        # pandas everywhere.
        return found.select(self._arrow.names).cast(self._arrow).to_pandas(date_as_object=True)

    def relevant(self, battery_ids: list[str], car_ids: list[str]) -> pd.DataFrame:
        """What a micro-batch's plan needs: alerts of these batteries, open alerts of these cars."""
        if not battery_ids and not car_ids:
            return pd.DataFrame(columns=ALERT_COLUMNS)
        if len(battery_ids) + len(car_ids) > SQL_IN_LIMIT:
            return self._scan(battery_ids, car_ids)
        wanted = []
        if battery_ids:
            wanted.append(f"battery_id IN ({sql_strings(battery_ids)})")
        if car_ids:
            wanted.append(f"(car_id IN ({sql_strings(car_ids)}) AND status = 'open')")
        return self.rows(" OR ".join(wanted))

    def _scan(self, battery_ids: list[str], car_ids: list[str]) -> pd.DataFrame:
        """`relevant` as a pyarrow scan with the ids as sets (no SQL text of every id)."""
        groups = []
        if battery_ids:
            groups.append([("battery_id", "in", battery_ids)])
        if car_ids:
            groups.append([("car_id", "in", car_ids), ("status", "=", "open")])
        table = self._fresh()
        dataset = table.to_pyarrow_dataset()
        return self._frame(dataset.to_table(filter=filter_expression(table, groups)))

    def merge(self, changes: AlertChanges, app_id: str, batch_id: int) -> dict:
        """Commit a plan's rows in one keyed MERGE recorded as (app_id, batch_id)."""
        from deltalake import CommitProperties, Transaction

        source = pa.Table.from_pandas(changes.rows, schema=_SOURCE, preserve_index=False)
        updates = {c: f"s.{c}" for c in UPDATED}
        inserts = {c: f"s.{c}" for c in ALERT_COLUMNS}
        return (
            self._fresh()
            .merge(
                source,
                "t.alert_id = s.alert_id",
                source_alias="s",
                target_alias="t",
                streamed_exec=False,
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id, batch_id)]
                ),
            )
            # An operator may have acknowledged the alert since it was read: only an alert
            # still open is refreshed or closed.
            .when_matched_update(updates, predicate="s._op = 'update' AND t.status = 'open'")
            .when_not_matched_insert(inserts, predicate=f"s._op = '{INSERT}'")
            .execute()
        )

    def mark_published(self, alert_ids: list[str], at: dt.datetime) -> int:
        """Record that these openings reached the alerts topic; returns rows changed."""
        if not alert_ids:
            return 0
        # A keyed MERGE with the ids as its source, not an `alert_id IN (...)` predicate:
        # delta-rs overflows its stack (SIGSEGV, the driver dies) on an IN list of ~100k ids,
        # which one micro-batch of a notes backlog opens.
        stamp = self._arrow.field("published_at").type
        source = pa.table(
            {
                "alert_id": pa.array(list(dict.fromkeys(alert_ids)), pa.string()),
                "published_at": pa.array([at] * len(set(alert_ids)), stamp),
            }
        )

        @on_commit_conflict
        def update() -> int:
            result = (
                self._fresh()
                .merge(
                    source,
                    "t.alert_id = s.alert_id AND t.published_at IS NULL",
                    source_alias="s",
                    target_alias="t",
                    streamed_exec=False,
                )
                .when_matched_update({"published_at": "s.published_at"})
                .execute()
            )
            return int(result.get("num_target_rows_updated", 0))

        return update()

    def unpublished(self, open_only: bool = True) -> pd.DataFrame:
        """Alerts whose opening is not marked as published (open ones, unless told otherwise)."""
        where = "published_at IS NULL" + (" AND status = 'open'" if open_only else "")
        return self.rows(where)


def commit_alert_changes(
    table: AlertTable,
    found: pd.DataFrame,
    arrivals: pd.DataFrame,
    app_id: str,
    batch_id: int,
) -> pd.DataFrame:
    """The openings `commit_alert_plan` committed (see there)."""
    return commit_alert_plan(table, found, arrivals, app_id, batch_id).openings


@on_commit_conflict
def commit_alert_plan(
    table: AlertTable,
    found: pd.DataFrame,
    arrivals: pd.DataFrame,
    app_id: str,
    batch_id: int,
) -> AlertChanges:
    """Plan a micro-batch's alert changes against the stored alerts and commit them once.

    `found` holds the batch's candidate alerts (`alerts.alerts_from_triggers`), `arrivals`
    the first readings of batteries new to the stream.

    Returns the changes committed now (`openings`: to publish); a replayed micro-batch whose
    changes are already committed returns none (the start-up outbox check publishes what it
    left unsent).
    """
    if table.committed_batch(app_id) >= batch_id:
        log.info("Batch %d's alert changes are already committed; skipping", batch_id)
        empty = pd.DataFrame(columns=ALERT_COLUMNS)
        return AlertChanges(empty.assign(_op=pd.Series(dtype=object)), empty)
    current = table.relevant(sorted(set(found["battery_id"])), sorted(set(arrivals["car_id"])))
    changes = plan_alert_changes(found, arrivals, current, utc_now())
    if not changes.empty:
        table.merge(changes, app_id, batch_id)
    return changes


def sql_strings(values: list[str]) -> str:
    """SQL string literals for an IN list (quotes inside a value doubled, as SQL wants)."""
    return ", ".join(sql_string(v) for v in values)


def utc_now() -> dt.datetime:
    """Now, in UTC (what the alert table's timestamps hold)."""
    return dt.datetime.now(dt.timezone.utc)
