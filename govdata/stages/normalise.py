"""Stage 2, normalise: one source's rows standardised, quarantined and reconciled, chunk by chunk.

The raw file is read a chunk of rows at a time (Settings.normalise_chunk_rows) and each chunk's
standardised rows and quarantine entries are appended to the std/ and quarantine/ files, so the
task holds one chunk, never the source. What needs the whole source — duplicate and missing
record keys — is decided first over the key column alone (transforms.normalise.find_key_faults).
The source's snapshot (current/, deleted/, changed/) is advanced by the next task, snapshot
(govdata/stages/snapshot.py), from what this one writes; the result carries what it needs."""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from govdata.failpoints import failpoint
from govdata.lake import iter_tables, parquet_rows, parquet_schema, read_arrow, run_path
from govdata.stages.common import _source, _timed

log = logging.getLogger(__name__)


@_timed
def normalise(extracted: dict, run: dict) -> dict:
    from govdata.settings import get_settings
    from govdata.standards.registry import load_standards
    from govdata.transforms.normalise import check_reconciliation

    config = _source(extracted["path"])
    std_path = run_path(run["lake"], run["run_id"], "std", f"{config.name}.parquet")
    q_path = run_path(run["lake"], run["run_id"], "quarantine", f"{config.name}.parquet")
    settings = get_settings()
    counts = normalise_file(extracted["raw_path"], config, load_standards(), std_path, q_path,
                            settings.normalise_chunk_rows, settings.normalise_workers)
    failpoint("normalise")
    # The gate `rows in = loaded + rejected`, counted again from what was written (each rejected
    # row has its own quarantine id): a ReconciliationError stops the run before anything loads.
    rows_std, rejected = parquet_rows(std_path), rejected_rows(q_path)
    check_reconciliation(config.name, {"rows_in": counts["rows_in"], "rows_standardised": rows_std,
                                       "rows_rejected": rejected})
    log.info("source %s reconciled: %d rows in = %d standardised + %d rejected (%d chunk(s))", config.name,
             counts["rows_in"], rows_std, rejected, counts["chunks"])
    return {
        "source": config.name,
        "kind": config.kind,
        "path": extracted["path"],
        "std_path": std_path,
        "quarantine_path": q_path,
        "rows_in": counts["rows_in"],
        "rows_standardised": rows_std,
        "rows_rejected": rejected,
        "values_quarantined": counts["values_quarantined"],
        "quarantine_reasons": counts["reasons"],
        "workers_peak_rss_mb": counts["peak_rss_mb"],   # the chunks may be normalised in forked workers
        "watermark": extracted.get("watermark"),
        # for the snapshot task: the extracted ids, and what this run's rows are merged into
        "raw_path": extracted["raw_path"],
        "incremental": bool(extracted.get("incremental", False)),
        "previous_snapshot": extracted.get("previous_snapshot"),
    }


def normalise_file(raw_path: str, config, standards, std_path: str, quarantine_path: str, chunk_rows: int,
                   workers: int = 1) -> dict:
    """A raw lake file normalised chunk_rows rows at a time into std_path and quarantine_path
    (appended chunk by chunk, encrypted like every lake file): the same rows and entries as the
    source normalised whole (quarantine entries grouped per chunk). `workers` > 1: the chunks
    are normalised side by side in that many forked processes, written in order. Returns the
    counts summed over the chunks: rows_in, rows_standardised, values_quarantined, reasons, chunks."""
    from govdata.lake import TableWriter
    from govdata.transforms.normalise import QUARANTINE_SCHEMA

    faults = source_key_faults(raw_path, config, chunk_rows)
    counts = {"rows_in": 0, "rows_standardised": 0, "values_quarantined": 0, "chunks": 0, "peak_rss_mb": 0}
    reasons: Counter = Counter()
    with TableWriter(std_path) as std_out, TableWriter(quarantine_path, QUARANTINE_SCHEMA) as q_out:
        for rows_in, std, quarantine, chunk_counts in _normalised_chunks(raw_path, (config, standards, faults),
                                                                         chunk_rows, workers):
            std_out.write(std)
            q_out.write(quarantine)
            counts["rows_in"] += rows_in
            counts["rows_standardised"] += std.num_rows
            counts["values_quarantined"] += chunk_counts["values_quarantined"]
            counts["chunks"] += 1
            counts["peak_rss_mb"] = max(counts["peak_rss_mb"], chunk_counts["peak_rss_mb"])
            reasons.update(chunk_counts["reasons"])
            del std, quarantine
    # most frequent first (ties by name): the same for any chunk size
    counts["reasons"] = {r: int(n) for r, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))}
    return counts


_JOB: tuple | None = None   # (config, standards, faults) of the source being normalised: forked workers inherit it


def _normalise_chunk(chunk: tuple[pa.Table, int]) -> tuple[int, pa.Table, pa.Table, dict]:
    """(rows in, standardised rows, quarantine entries, counts) of one raw chunk starting at row
    `offset` of the source; Arrow in and out (cheap to pass between processes)."""
    from govdata.transforms.normalise import QUARANTINE_SCHEMA, normalise_source

    from govdata.memory import peak_rss_mb

    table, offset = chunk
    config, standards, faults = _JOB
    frame = table.to_pandas()   # strings as read_parquet gives them
    result = normalise_source(frame, config, standards, faults, offset)
    std = pa.Table.from_pandas(result.standardised, preserve_index=False)
    quarantine = pa.Table.from_pandas(result.quarantine, schema=QUARANTINE_SCHEMA, preserve_index=False)
    return len(frame), std, quarantine, {**result.counts, "peak_rss_mb": peak_rss_mb()}


def _normalised_chunks(raw_path: str, job: tuple, chunk_rows: int, workers: int) -> Iterator[tuple]:
    """_normalise_chunk over the raw file's chunks, in order: in this process, or with workers > 1
    and more than one chunk in that many forked processes (govdata.forking.fork_pool)."""
    global _JOB
    from govdata.forking import can_fork, fork_pool

    _JOB = job
    try:
        chunks = _offsets(_tables(raw_path, chunk_rows))
        if workers < 2 or parquet_rows(raw_path) <= chunk_rows or not can_fork():
            yield from map(_normalise_chunk, chunks)
            return
        with fork_pool(workers) as pool:
            # imap keeps the order and reads ahead only as fast as the workers take chunks
            yield from pool.imap(_normalise_chunk, chunks)
    finally:
        _JOB = None


def _offsets(tables: Iterator[pa.Table]) -> Iterator[tuple[pa.Table, int]]:
    offset = 0
    for table in tables:
        yield table, offset
        offset += table.num_rows


def _tables(raw_path: str, chunk_rows: int) -> Iterator[pa.Table]:
    """The raw file as tables of chunk_rows rows; an empty file is one empty table, so that the
    std file still gets its columns."""
    empty = True
    for table in iter_tables(raw_path, chunk_rows):
        empty = False
        yield table
    if empty:
        yield parquet_schema(raw_path).empty_table()


def source_key_faults(raw_path: str, config, chunk_rows: int):
    """The key faults of the whole source (transforms.normalise.find_key_faults) from its key
    column read chunk by chunk; a faulty row's other values are read only when there are any."""
    from govdata.extract import RECORD_ID, ROW_HASH
    from govdata.transforms.normalise import canonical_keys, content_hashes, find_key_faults, key_columns

    chunks = [canonical_keys(t.column(RECORD_ID).cast(pa.string())) for t in iter_tables(raw_path, chunk_rows, [RECORD_ID])]
    keys = pa.chunked_array(chunks, pa.string()).combine_chunks() if chunks else pa.array([], pa.string())
    names = parquet_schema(raw_path).names
    data = key_columns(config, names)

    def contents(positions: np.ndarray) -> np.ndarray:
        if not data:
            return np.zeros(len(positions), dtype=np.uint64)
        return _at_positions(raw_path, positions, data, chunk_rows, content_hashes)

    def row_hashes(positions: np.ndarray) -> np.ndarray:
        if ROW_HASH in names:
            return _at_positions(raw_path, positions, [ROW_HASH], chunk_rows,
                                 lambda frame: frame[ROW_HASH].astype(str).to_numpy())
        return np.char.mod("%016x", _at_positions(raw_path, positions, None, chunk_rows, content_hashes))

    return find_key_faults(keys, contents, row_hashes)


def _at_positions(raw_path: str, positions: np.ndarray, columns: list[str] | None, chunk_rows: int,
                  fn: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    """fn over the rows at the given positions (ascending) of a lake file, chunk by chunk."""
    out, start = [], 0
    for table in iter_tables(raw_path, chunk_rows, columns):
        stop = start + table.num_rows
        lo, hi = np.searchsorted(positions, [start, stop])
        if hi > lo:
            out.append(np.asarray(fn(table.take(pa.array(positions[lo:hi] - start)).to_pandas())))
        start = stop
    return np.concatenate(out) if out else np.zeros(0, dtype=object)


def rejected_rows(quarantine_path: str) -> int:
    """Distinct quarantine ids of rejected rows in a quarantine file (its id columns only)."""
    import pyarrow.compute as pc

    table = read_arrow(quarantine_path, columns=["source_record_id", "row_rejected"])
    ids = table.column("source_record_id").filter(pc.fill_null(table.column("row_rejected"), False))
    return int(pc.count_distinct(ids).as_py())
