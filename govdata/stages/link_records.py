"""An entity's records as link_plan reads them from the lake: read again for each step, in the
columns (and rows) the step needs, instead of one table of every column held from the first step
to the last (at 5M persons that table was 2 GB beside the incremental scope's own 4 GB)."""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:   # names used in annotations only
    import numpy as np
    import pyarrow as pa

# Rows a lake file is read at a time when the rows of a mask are gathered
READ_BATCH_ROWS = 250_000


class LakeRecords:
    """The records of the lake files at paths, in their order, as one table: the plan's columns
    (plan_columns), text as dictionaries (plan_dictionary), types unified across the files, and
    columns computed over every record held beside them (the shared-value counts)."""

    def __init__(self, paths: list[str]):
        from govdata.lake import dataset, parquet_rows
        from govdata.transforms.linkage.plan import plan_columns, plan_dictionary

        self.paths = list(paths)
        self.schemas = [dataset(path).schema for path in self.paths]
        self.columns = [plan_columns(schema.names) for schema in self.schemas]
        self.dictionary = [plan_dictionary(schema, columns) for schema, columns in zip(self.schemas, self.columns)]
        self.rows = [parquet_rows(path) for path in self.paths]
        self.counts: dict[str, "np.ndarray"] = {}

    @property
    def num_rows(self) -> int:
        return sum(self.rows)

    @property
    def column_names(self) -> list[str]:
        names = list(dict.fromkeys(c for columns in self.columns for c in columns))
        return names + [c for c in self.counts if c not in names]

    def with_counts(self, counts: dict[str, "np.ndarray"]) -> "LakeRecords":
        """These records with count columns (per record, in order) added or replaced."""
        out = copy.copy(self)
        out.counts = {**self.counts, **counts}
        return out

    def read(self, columns: list[str] | None = None, rows: "np.ndarray | None" = None) -> "pa.Table":
        """The given columns (None: all; absent ones left out) of every record, or of the records
        of a boolean mask (each file's columns read, then cut to its rows)."""
        import pyarrow as pa

        from govdata.lake import read_arrow
        from govdata.memory import release_memory
        from govdata.transforms.linkage.plan import concat_conformed, unified_dictionaries
        from govdata.transforms.linkage.records import present
        from govdata.transforms.linkage.shared_values import with_counts

        mask = None if rows is None else self._mask(rows)
        if not any(present(columns, names) for names in self.columns):   # no column, every row
            empty = pa.table({"_": pa.nulls(self.num_rows if mask is None else int(mask.sum()))}).select([])
            return with_counts(empty, self._counts(columns, mask))
        parts = []
        for path, names, dictionary, (start, stop) in zip(self.paths, self.columns, self.dictionary, self._spans()):
            wanted = present(columns, names)
            table = read_arrow(path, wanted, [c for c in dictionary if c in wanted]) if wanted else \
                pa.table({"_": pa.nulls(stop - start)}).select([])   # Parquet read no column as no row
            parts.append(table if mask is None else table.filter(pa.array(mask[start:stop])))
            del table
            release_memory()   # the file's rows outside the mask
        return with_counts(unified_dictionaries(concat_conformed(parts)), self._counts(columns, mask))

    def chunks(self, rows: "np.ndarray", columns: list[str] | None, rows_per_chunk: int) -> Iterator["pa.Table"]:
        """The records of a boolean mask in order, rows_per_chunk at a time, in the given columns:
        each file read a batch at a time, only the batch's masked rows kept."""
        from govdata.transforms.linkage.records import in_chunks

        return in_chunks(self._masked_batches(self._mask(rows), columns), rows_per_chunk)

    def _masked_batches(self, mask: "np.ndarray", columns: list[str] | None) -> Iterator["pa.Table"]:
        import pyarrow as pa

        from govdata.lake import iter_tables
        from govdata.transforms.linkage.records import present
        from govdata.transforms.linkage.shared_values import with_counts

        counted = [c for c in self.counts if columns is None or c in columns]
        for path, names, (start, _) in zip(self.paths, self.columns, self._spans()):
            at = start
            for batch in iter_tables(path, READ_BATCH_ROWS, present(columns, names)):
                keep = mask[at:at + batch.num_rows]
                if keep.any():
                    yield with_counts(batch.filter(pa.array(keep)),
                                      {c: self.counts[c][at:at + batch.num_rows][keep] for c in counted})
                at += batch.num_rows

    def _counts(self, columns: list[str] | None, mask: "np.ndarray | None") -> dict[str, "np.ndarray"]:
        """The count columns among columns (None: all), of the masked records."""
        return {c: v if mask is None else v[mask] for c, v in self.counts.items() if columns is None or c in columns}

    def _mask(self, rows) -> "np.ndarray":
        import numpy as np

        mask = np.asarray(rows, dtype=bool)
        if len(mask) != self.num_rows:
            raise ValueError(f"LakeRecords: a mask of {len(mask)} rows for {self.num_rows} records")
        return mask

    def _spans(self) -> list[tuple[int, int]]:
        """(first row, row after the last) of each file among all the records."""
        import numpy as np

        ends = np.cumsum(self.rows, dtype=np.int64)
        return [(int(end - n), int(end)) for end, n in zip(ends, self.rows)]
