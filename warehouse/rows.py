"""Small helpers shared by the row builders (build, owners, facts)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pandas as pd
import pyarrow as pa
from govdata.forking import can_fork, fork_pool
from govdata.memory import peak_rss_mb
from govdata.transforms.privacy import per_unique, token_array
from govdata.warehouse.schema import table_for
from govdata.warehouse.vault import ciphertext_array


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")


def _table_columns(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Only the warehouse table's columns (missing nullable ones as NULL), in table order."""
    cols = [c.name for c in table_for(table).columns]
    out = frame.reindex(columns=cols)
    return out.reset_index(drop=True)


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column as `string`; Arrow-backed text stays Arrow-backed (no Python str per value)."""
    if name not in frame:
        return pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame[name] if isinstance(frame[name].dtype, pd.StringDtype) else frame[name].astype("string")


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame else pd.Series(pd.NA, index=frame.index, dtype="object")


# --- identifier tokens ---------------------------------------------------------------------
def identifier_token(values: pd.Series, key: bytes) -> pd.Series:
    """privacy.token (HMAC-SHA256 hex per value, NULL stays NULL), each distinct value tokenised
    once, on the build's workers when it has them. No memo across tables: a dict of every
    identifier the build tokenised held ~210 MB per million (5M persons: ~2 GB) and looking
    values up in it cost more than HMAC on the workers (1M persons: load 70.8 -> 62.7 s, peak
    2,169 -> 1,925 MB without it). Python text (`string`)."""
    return pd.Series(per_unique(values, lambda distinct: secrets_of([(distinct, None)], key)()[0][0].to_pylist()),
                     index=values.index, dtype="string")


def identifier_token_array(values: pa.Array, key: bytes) -> pa.Array:
    """identifier_token of Arrow text, kept in Arrow: each distinct value tokenised once (on the
    build's workers when it has them), NULL stays NULL, no Python str per token."""
    encoded = values.dictionary_encode()
    tokens = secrets_of([(encoded.dictionary.to_pylist(), None)], key)()[0][0]
    return tokens.take(encoded.indices)


# --- tokens and vault ciphertexts on forked workers ------------------------------------------
def _tokens_and_ciphertexts(job: tuple[bytes, str | None, list[str]]) -> tuple[pa.Array, pa.Array | None, int]:
    """(token of each value, its vault ciphertext under `field` — None without one, this process's
    peak RSS in MB). Run in a worker: the key comes with the job, values are distinct."""
    key, field, values = job
    ciphertexts = None if field is None else ciphertext_array(values, key, field)
    return token_array(values, key), ciphertexts, peak_rss_mb()


class _Workers:
    """The build's pool of forked processes, and the largest peak RSS its workers reported."""

    def __init__(self, pool, processes: int):
        self.pool, self.processes, self.peak_rss_mb = pool, processes, 0

    def start(self, jobs: list[tuple]) -> Callable[[], list[tuple]]:
        pending = self.pool.map_async(_tokens_and_ciphertexts, jobs, chunksize=1)

        def results() -> list[tuple]:
            done = pending.get()
            self.peak_rss_mb = max([self.peak_rss_mb, *(r[2] for r in done)])
            return done

        return results


_workers: _Workers | None = None


@contextmanager
def crypto_workers(processes: int) -> Iterator[dict]:
    """While open, secrets_of computes tokens and ciphertexts on `processes` forked workers: one
    pool for the whole build, forked on entry while the process is small (govdata.forking.
    fork_pool: closed and joined at the end, terminated when the build failed). Fewer than two,
    no fork here, or a pool already open: in this process (or that pool). Yields a dict that
    receives the workers' peak RSS (workers_peak_rss_mb) when it closes."""
    global _workers
    report: dict = {}
    if processes < 2 or _workers is not None or not can_fork():
        yield report
        return
    with fork_pool(processes) as pool:
        workers = _workers = _Workers(pool, processes)
        try:
            yield report
        finally:
            _workers = None
    report["workers_peak_rss_mb"] = workers.peak_rss_mb


def _pieces(values: list[str], parts: int) -> list[list[str]]:
    step = -(-len(values) // parts) or 1
    return [values[i * step:(i + 1) * step] for i in range(parts)]


def secrets_of(batches: list[tuple[list[str], str | None]], key: bytes
               ) -> Callable[[], list[tuple[pa.Array, pa.Array | None]]]:
    """Starts tokenising (and, where a vault field is named, encrypting) each batch of distinct
    values: split across the open crypto_workers, else in this process. Returns the function
    that waits for the results: per batch, (tokens, ciphertexts or None), in the values' order.
    The caller may build other columns in between."""
    workers = _workers
    parts = workers.processes if workers is not None else 1
    jobs = [(key, field, piece) for values, field in batches for piece in _pieces(values, parts)]
    results = workers.start(jobs) if workers is not None else lambda: list(map(_tokens_and_ciphertexts, jobs))

    def joined() -> list[tuple[pa.Array, pa.Array | None]]:
        done = results()
        out = []
        for b in range(len(batches)):
            mine = done[b * parts:(b + 1) * parts]
            tokens = pa.concat_arrays([r[0] for r in mine])
            out.append((tokens, None if mine[0][1] is None else pa.concat_arrays([r[1] for r in mine])))
        return out

    return joined
