"""Delta tables without a JVM (delta-rs): filtered, projected reads and commit-conflict retries.

`pitstop alerts`, the forecast plot, the demo's summary and training read the lake through
here in about a second. Filters and column lists are handed to delta-rs, which prunes files
by their statistics and reads only the columns asked for, instead of loading a whole table
into pandas and filtering there. Spark users keep Spark SQL on the very same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pyarrow.lib import ArrowNotImplementedError
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from core.config import PitstopConfig
from core.errors import PitstopError

# delta-rs's disjunctive normal form: [(column, op, value), ...] ANDed, or a list of such
# lists ORed; op is one of =, !=, <, <=, >, >=, in, not in.
Filters = list[tuple[str, str, Any]] | list[list[tuple[str, str, Any]]]


class LakeError(PitstopError):
    """A Delta table cannot be read; the message names its location."""


def _commit_failed() -> type[Exception]:
    from deltalake.exceptions import CommitFailedError

    return CommitFailedError


# A concurrent writer (the stream's MERGE, `pitstop alerts ack`, `pitstop maintain`) won the
# race: read the table again and redo the change. delta-rs itself already retries commits
# that do not conflict.
on_commit_conflict = retry(
    retry=retry_if_exception_type(_commit_failed()),
    stop=stop_after_attempt(6),
    wait=wait_exponential(multiplier=0.1, max=2),
    reraise=True,
)


def open_table(location: str, storage_options: dict[str, str] | None = None) -> Any | None:
    """The delta-rs table at `location`, or None when there is none yet.

    A local folder that exists but holds no Delta log is an error, not an empty table.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(location, storage_options=storage_options)
    except TableNotFoundError:
        if "://" in location or not Path(location).exists():
            return None
        raise LakeError(f"{location} exists but is not a Delta table.") from None


def sql_string(value: str) -> str:
    """`value` as a SQL string literal for delta-rs predicates and updates (quotes doubled):
    delta-rs's own `new_values` pastes strings between quotes as they are."""
    return "'" + str(value).replace("'", "''") + "'"


def read_table(
    cfg: PitstopConfig,
    name: str,
    *,
    columns: Sequence[str] | None = None,
    filters: Filters | None = None,
) -> pd.DataFrame:
    """Rows of the Delta table `name` matching `filters`, only `columns` (default: all).

    An empty frame when the table does not exist yet.
    """
    table = open_table(cfg.storage.table(name))
    if table is None:
        return pd.DataFrame()
    wanted = list(columns) if columns is not None else None
    try:
        return table.to_pandas(columns=wanted, filters=filters)
    except ArrowNotImplementedError:
        # delta-rs 1.6 writes the string columns an UPDATE or a MERGE's update sets as Arrow
        # string views; pyarrow cannot compare such a file's column with the filter's
        # string. Read it cast to the table's schema, then filter.
        return _filtered_after_read(table, wanted, filters)


def _filtered_after_read(table: Any, columns: list[str] | None, filters: Filters) -> pd.DataFrame:
    import pyarrow.parquet as pq

    groups = filters if isinstance(filters[0], list) else [filters]
    needed = {column for group in groups for column, _, _ in group} - set(columns or [])
    read = None if columns is None else [*columns, *sorted(needed)]
    rows = table.to_pyarrow_table(columns=read).filter(pq.filters_to_expression(filters))
    return rows.select(columns).to_pandas() if columns is not None else rows.to_pandas()


def count_rows(cfg: PitstopConfig, name: str) -> int:
    """How many rows the table `name` holds (0 when it does not exist), read from its files'
    metadata rather than their data."""
    table = open_table(cfg.storage.table(name))
    return 0 if table is None else int(table.to_pyarrow_dataset().count_rows())
