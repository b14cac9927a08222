"""Records read the way the relink scope reads them: some columns of every record, or the rows
of a mask a chunk at a time. link_plan's come from the lake a column set or a batch at a time
(govdata.stages.link_records.LakeRecords), so no table of every record and every column is held
while the scope works; TableRecords serves a table already in memory."""
from __future__ import annotations

from typing import Iterable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from .plan import concat_conformed


def in_chunks(tables: Iterable[pa.Table], rows_per_chunk: int) -> Iterator[pa.Table]:
    """The rows of tables, in order, regrouped into tables of rows_per_chunk rows (the last one
    fewer; none when there is no row); tables of other types are conformed (concat_conformed)."""
    kept: list[pa.Table] = []
    held = 0
    for table in tables:
        if table.num_rows:
            kept.append(table)
            held += table.num_rows
        while held >= rows_per_chunk:
            whole = concat_conformed(kept)
            yield whole.slice(0, rows_per_chunk)
            kept, held = [whole.slice(rows_per_chunk)], held - rows_per_chunk
    if held:
        yield concat_conformed(kept)


def present(columns: list[str] | None, names: list[str]) -> list[str]:
    """Of columns (None: all of names), those in names, in names' order."""
    return list(names) if columns is None else [c for c in names if c in set(columns)]


class Records(Protocol):
    """What the relink scope reads records through (TableRecords, LakeRecords)."""

    @property
    def num_rows(self) -> int: ...

    @property
    def column_names(self) -> list[str]: ...

    def read(self, columns: list[str] | None = None, rows: np.ndarray | None = None) -> pa.Table: ...

    def chunks(self, rows: np.ndarray, columns: list[str] | None, rows_per_chunk: int) -> Iterator[pa.Table]: ...


class TableRecords:
    """Records held whole in memory as one Arrow table."""

    def __init__(self, table: pa.Table):
        self.table = table

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def column_names(self) -> list[str]:
        return self.table.column_names

    def read(self, columns: list[str] | None = None, rows: np.ndarray | None = None) -> pa.Table:
        """The given columns (None: all; absent ones left out) of every record, or of the records
        of a boolean mask."""
        table = self.table.select(present(columns, self.table.column_names))
        return table if rows is None else table.filter(pa.array(np.asarray(rows, dtype=bool)))

    def chunks(self, rows: np.ndarray, columns: list[str] | None, rows_per_chunk: int) -> Iterator[pa.Table]:
        """The records of a boolean mask in order, rows_per_chunk at a time, in the given columns."""
        return in_chunks([self.read(columns, rows)], rows_per_chunk)
