"""Where a run's files live in the lake: one folder per run, any fsspec URL."""
from __future__ import annotations

import re

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def safe_run_id(run_id: str) -> str:
    """Airflow run ids carry ':' and '+', which object stores and Windows dislike."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def run_path(lake: str, run_id: str, *parts: str) -> str:
    return "/".join([lake.rstrip("/"), safe_run_id(run_id), *parts])


def _fs(path: str):
    fs, _, (p,) = fsspec.get_fs_token_paths(path)
    return fs, p


# Hand-offs between the tasks of one stage (link_plan → link → link_merge) are Arrow IPC
# files, uncompressed: written and read at memory speed, where Parquet spends seconds per
# million rows compressing files read once. A run's durable outputs stay Parquet.
IPC_SUFFIX = ".arrow"


def _is_ipc(path: str) -> bool:
    return path.endswith(IPC_SUFFIX)


def _as_table(frame: pd.DataFrame | pa.Table) -> pa.Table:
    return frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)


def write_parquet(frame: pd.DataFrame | pa.Table, path: str) -> str:
    """Writes Parquet, or an Arrow IPC file when the path ends in .arrow."""
    fs, p = _fs(path)
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    table = _as_table(frame)
    with fs.open(p, "wb") as fh:
        if _is_ipc(path):
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
        else:
            pq.write_table(table, fh)
    return path


def _arrow_string_dtype(typ: pa.DataType):
    return pd.StringDtype("pyarrow") if pa.types.is_string(typ) or pa.types.is_large_string(typ) else None


def read_parquet(path: str, columns: list[str] | None = None, arrow_strings: bool = False) -> pd.DataFrame:
    """arrow_strings: text columns stay Arrow-backed (string[pyarrow]); no Python str per value."""
    return to_pandas(read_arrow(path, columns), arrow_strings)


def to_pandas(table: pa.Table, arrow_strings: bool = False) -> pd.DataFrame:
    """arrow_strings: text columns stay Arrow-backed (string[pyarrow])."""
    return table.to_pandas(types_mapper=_arrow_string_dtype if arrow_strings else None)


def read_arrow(path: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet or Arrow IPC (.arrow) file as an Arrow table."""
    fs, p = _fs(path)
    with fs.open(p, "rb") as fh:
        if not _is_ipc(path):
            return pq.read_table(fh, columns=columns)
        table = pa.ipc.open_file(fh).read_all()
        return table.select(columns) if columns is not None else table


def exists(path: str) -> bool:
    fs, p = _fs(path)
    return fs.exists(p)


def open_writer(path: str, schema: pa.Schema) -> tuple[pq.ParquetWriter, object]:
    """A streaming Parquet writer (for sources larger than memory); close both when done."""
    fs, p = _fs(path)
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    fh = fs.open(p, "wb")
    return pq.ParquetWriter(fh, schema), fh
