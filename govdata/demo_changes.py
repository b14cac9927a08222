"""A day of changes in a generated world: what the next incremental run has to pick up.

In every person department a share of the rows changes (a new phone number; a lost ID
number, which sends the record to the probabilistic pass) and a few rows are registered
again under a new record number without an ID. Each changed row gets a later update time, so
watermark extraction sees exactly these rows. Used by `make bench` to measure incremental
linking against a full relink of the same data.
"""
from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import numpy as np
import yaml

LATER = "2099-01-01 00:00:00"   # after every generated update time, in the generator's format


def later_than(stamp: str | None) -> str:
    """The update time a day of changes gets: LATER, or a day after the latest one when a day of
    changes already used LATER (a world a previous bench changed), so watermark extraction
    sees exactly the new day's rows."""
    if stamp is None or str(stamp) < LATER:
        return LATER
    return (dt.datetime.strptime(str(stamp)[:19], "%Y-%m-%d %H:%M:%S") + dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")


def _columns_by_element(source: dict) -> dict[str, str]:
    return {element: column for column, element in source["columns"].items()}


def change_source(db: Path, source: dict, share: float, rng: np.random.Generator) -> dict[str, int]:
    """Changes share of one person source's rows in place; returns counts per kind of change,
    each the number of rows the database reports written (a mismatch with the plan raises).

    Keys are bound as the Python values sqlite3 returned: a numpy int64 would be bound as a BLOB
    and match no row of an INTEGER primary key. Rows registered again get a new key of the
    primary key's own type (the next integers after the largest for an INTEGER key; NEW and a
    number after those of days changed before for a text key)."""
    table, pk = source["table"], source["primary_key"]
    col = _columns_by_element(source)
    stamp = source["incremental"]["column"]
    with sqlite3.connect(db) as con:
        later = later_than(con.execute(f'select max("{stamp}") from "{table}"').fetchone()[0])
        keys = [r[0] for r in con.execute(f'select "{pk}" from "{table}" order by "{pk}"')]
        n = max(1, int(len(keys) * share))
        picked = [keys[i] for i in rng.choice(len(keys), size=min(n, len(keys)), replace=False).tolist()]
        phone, lost_id, again = picked[:n // 2], picked[n // 2:n // 2 + n // 4], picked[n // 2 + n // 4:]
        counts = {"phone_changed": 0, "id_lost": 0, "registered_again": 0}
        if "phone" in col:
            counts["phone_changed"] = _written(con.executemany(
                f'update "{table}" set "{col["phone"]}" = ?, "{stamp}" = ? where "{pk}" = ?',
                [(f"199{i:08d}", later, k) for i, k in enumerate(phone)]), len(phone), source["name"])
        counts["id_lost"] = _written(con.executemany(
            f'update "{table}" set "{col["id_number"]}" = NULL, "{stamp}" = ? where "{pk}" = ?',
            [(later, k) for k in lost_id]), len(lost_id), source["name"])
        info = list(con.execute(f'pragma table_info("{table}")'))
        names = [r[1] for r in info]
        integer_key = any(r[1] == pk and r[2].upper() == "INTEGER" for r in info)
        top = max(keys) if integer_key and keys else 0
        earlier = sum(1 for k in keys if isinstance(k, str) and k.startswith("NEW"))   # a day changed before
        select = ", ".join("?" if c == pk else "NULL" if c == col["id_number"] else "?" if c == stamp
                           else f'"{c}"' for c in names)
        inserted = 0
        for i, k in enumerate(again):
            new_key = top + 1 + i if integer_key else f"NEW{earlier + i:09d}"
            params = [new_key if c == pk else later for c in names if c in (pk, stamp)]
            inserted += con.execute(f'insert into "{table}" select {select} from "{table}" where "{pk}" = ?',
                                    [*params, k]).rowcount
        counts["registered_again"] = _written(inserted, len(again), source["name"])
    return counts


def _written(cursor_or_count, planned: int, source: str) -> int:
    """Rows the database wrote; the changes reported are the changes made, or this raises."""
    written = cursor_or_count if isinstance(cursor_or_count, int) else cursor_or_count.rowcount
    if written != planned:
        raise RuntimeError(f"{source}: {planned} changes planned, {written} rows written")
    return written


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


def main(argv: list[str] | None = None) -> int:
    """`python -m govdata.demo_changes WORLD [--share 0.01] [--seed 11]`: a day of changes in a world
    made by `govdata demo-data`; prints the changes per department (what the next run picks up)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m govdata.demo_changes", description=main.__doc__)
    parser.add_argument("world", type=Path)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    changes = change_world(args.world, args.share, args.seed)
    print(json.dumps({"changes": changes, "rows": sum(sum(c.values()) for c in changes.values())}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
