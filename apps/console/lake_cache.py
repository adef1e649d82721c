"""Delta reads for the console, cached by table version.

Each table keeps one delta-rs handle; before a read the handle catches up with new commits
(`update_incremental`, a listing of the log's tail), and a result is reused while the
table's version is unchanged. A page whose data did not change since its last view scans
nothing. Filters and column lists still go down to delta-rs (file pruning, projection).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import pandas as pd

from core.config import PitstopConfig
from core.lake import Filters, open_table, read_filtered

log = logging.getLogger(__name__)

T = TypeVar("T")


class LakeCache:
    """Version-keyed reads of Pitstop's Delta tables (thread-safe, bounded)."""

    def __init__(self, cfg: PitstopConfig, max_entries: int = 256) -> None:
        self._cfg = cfg
        self._tables: dict[str, Any] = {}
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._max = max_entries
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def location(self, name: str) -> str:
        """Where the table `name` lives."""
        return self._cfg.storage.table(name)

    def version(self, name: str) -> int | None:
        """The table's current version, None when it does not exist (yet)."""
        with self._lock:
            table = self._tables.get(name)
            if table is None:
                table = open_table(self.location(name))
                if table is None:
                    return None
                self._tables[name] = table
            else:
                table.update_incremental()
            return int(table.version())

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filters: Filters | None = None,
    ) -> pd.DataFrame:
        """Rows of table `name` (only `columns`, matching `filters`); empty when it is missing.

        Reused until the table's version changes.
        """
        version = self.version(name)
        if version is None:
            return pd.DataFrame(columns=list(columns or []))
        key = ("read", name, version, tuple(columns or ()), repr(filters))
        return self._remember(key, lambda: self._scan(name, columns, filters))

    def derived(self, label: str, tables: Sequence[str], compute: Callable[[], T]) -> T:
        """`compute()` reused until one of `tables` changes version (for results built from
        several reads, such as a page's summaries)."""
        versions = tuple(self.version(t) for t in tables)
        return self._remember(("derived", label, versions), compute)

    def clear(self) -> None:
        """Forget every cached result (the next reads scan again)."""
        with self._lock:
            self._entries.clear()

    def _scan(
        self, name: str, columns: Sequence[str] | None, filters: Filters | None
    ) -> pd.DataFrame:
        with self._lock:
            table = self._tables[name]
        present = {field.name for field in table.schema().fields}
        wanted = None if columns is None else [c for c in columns if c in present]
        frame = read_filtered(table, wanted, filters)
        # A table written before a column existed (e.g. a newer schema): the column is empty.
        for column in columns or ():
            if column not in frame.columns:
                frame[column] = None
        return frame

    def _remember(self, key: Hashable, compute: Callable[[], T]) -> T:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
        value = compute()
        with self._lock:
            self.misses += 1
            self._entries[key] = value
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return value
