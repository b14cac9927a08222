"""A day of changes in a generated world: what the next incremental run has to pick up.

In every person department a share of the rows changes (a new phone number; a lost ID
number, which sends the record to the probabilistic pass) and a few rows are registered
again under a new record number without an ID. Each changed row gets a later update time, so
watermark extraction sees exactly these rows. Used by `make bench` to measure incremental
linking against a full relink of the same data.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import yaml

LATER = "2099-01-01 00:00:00"   # after every generated update time, in the generator's format


def _columns_by_element(source: dict) -> dict[str, str]:
    return {element: column for column, element in source["columns"].items()}


def change_source(db: Path, source: dict, share: float, rng: np.random.Generator) -> dict[str, int]:
    """Changes share of one person source's rows in place; returns counts per kind of change."""
    table, pk = source["table"], source["primary_key"]
    col = _columns_by_element(source)
    stamp = source["incremental"]["column"]
    with sqlite3.connect(db) as con:
        keys = np.array([r[0] for r in con.execute(f'select "{pk}" from "{table}" order by "{pk}"')])
        n = max(1, int(len(keys) * share))
        picked = rng.choice(keys, size=min(n, len(keys)), replace=False)
        phone, lost_id, again = np.array_split(picked, [n // 2, n // 2 + n // 4])
        counts = {"phone_changed": 0, "id_lost": 0, "registered_again": 0}
        if "phone" in col:
            con.executemany(f'update "{table}" set "{col["phone"]}" = ?, "{stamp}" = ? where "{pk}" = ?',
                            [(f"199{i:08d}", LATER, k) for i, k in enumerate(phone)])
            counts["phone_changed"] = len(phone)
        con.executemany(f'update "{table}" set "{col["id_number"]}" = NULL, "{stamp}" = ? where "{pk}" = ?',
                        [(LATER, k) for k in lost_id])
        counts["id_lost"] = len(lost_id)
        names = [r[1] for r in con.execute(f'pragma table_info("{table}")')]
        select = ", ".join("?" if c == pk else "NULL" if c == col["id_number"] else "?" if c == stamp
                           else f'"{c}"' for c in names)
        for i, k in enumerate(again):
            params = [f"NEW{i:09d}" if c == pk else LATER for c in names if c in (pk, stamp)]
            con.execute(f'insert into "{table}" select {select} from "{table}" where "{pk}" = ?', [*params, k])
        counts["registered_again"] = len(again)
    return counts


def change_world(world: Path, share: float = 0.01, seed: int = 11) -> dict[str, dict[str, int]]:
    """Changes share of the rows of every person department of a generated world."""
    rng = np.random.default_rng(seed)
    out = {}
    for path in sorted((Path(world) / "sources").glob("*.yaml")):
        source = yaml.safe_load(path.read_text(encoding="utf-8"))
        if source["kind"] != "person" or not source.get("incremental"):
            continue
        out[source["name"]] = change_source(Path(world) / "departments" / f"{source['name']}.sqlite", source,
                                            share, rng)
    return out
