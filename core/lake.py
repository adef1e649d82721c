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

# [(column, op, value), ...], ANDed; op is one of =, !=, <, <=, >, >=.
Filters = list[tuple[str, str, Any]]


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


def filter_expression(table: Any, filters: Filters) -> Any:
    """`filters` (delta-rs's DNF) as a pyarrow expression over `table`'s dataset.

    String columns are compared as plain strings: files that delta-rs's own MERGE and UPDATE
    wrote store them as string views, which pyarrow cannot compare with a string literal
    ("no kernel matching input types (string, string_view)") once a file's statistics do not
    settle the comparison. Other columns keep their type, so their statistics still prune.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = table.to_pyarrow_dataset().schema
    groups = filters if filters and isinstance(filters[0], list) else [filters]
    expression = None
    for group in groups:
        conjunction = None
        for column, op, value in group:
            term = _comparison(pc, pa, schema.field(column), op, value)
            conjunction = term if conjunction is None else conjunction & term
        if conjunction is not None:
            expression = conjunction if expression is None else expression | conjunction
    return expression


def _comparison(pc: Any, pa: Any, field: Any, op: str, value: Any) -> Any:
    textual = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    column = pc.field(field.name).cast(pa.string()) if textual else pc.field(field.name)
    if op in ("in", "not in"):
        values = pa.array(list(value), type=pa.string() if textual else field.type)
        member = column.isin(values)
        return member if op == "in" else ~member
    scalar = pa.scalar(value, type=pa.string() if textual else field.type)
    comparisons = {
        "=": column == scalar,
        "!=": column != scalar,
        "<": column < scalar,
        "<=": column <= scalar,
        ">": column > scalar,
        ">=": column >= scalar,
    }
    if op not in comparisons:
        raise LakeError(f"Unknown filter operator {op!r}.")
    return comparisons[op]


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
    return read_filtered(table, list(columns) if columns is not None else None, filters)


def read_filtered(table: Any, columns: list[str] | None, filters: Filters | None) -> pd.DataFrame:
    """`columns` of the rows of a delta-rs table matching `filters`.

    delta-rs 1.6 writes the string columns an UPDATE or a MERGE's update sets as Arrow string
    views, and pyarrow cannot compare such a file's column with the filter's string: then
    the filter is read again comparing string columns as strings (`filter_expression`).
    """
    try:
        return table.to_pandas(columns=columns, filters=filters or None)
    except ArrowNotImplementedError:
        return table.to_pandas(columns=columns, filters=filter_expression(table, filters))


def count_rows(cfg: PitstopConfig, name: str) -> int:
    """How many rows the table `name` holds (0 when it does not exist), read from its files'
    metadata rather than their data."""
    table = open_table(cfg.storage.table(name))
    return 0 if table is None else int(table.to_pyarrow_dataset().count_rows())
