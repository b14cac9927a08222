"""Shared phones and addresses: how many distinct persons use a value.

A family shares numbers and a home: a parent's mobile on a child's health record, a child's on
an elder's pension file, one address for the household. Agreement on such a value says less
than agreement on a personal one, so person linkage scores it with u scaled by the number of
persons seen with the value: agreement weight log2(m / (u * k)), never below 0 (a shared value
is weak evidence, not evidence against). A person here is a distinct (birth date, sex) among all
records carrying the value — own birth date and sex, else those the usable ID number encodes.
Names are left out on purpose: spelling variants of one person would count as several persons,
while family members differ in birth date. Computed over every record of a run (link_plan), so
each partition and an incremental scope weigh a value as a full run does.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from govdata.memory import release_memory

from .partition import text_column, value_codes

SHARED = {"phone": "phone_persons", "address": "address_persons"}   # value column -> its count column
COLUMNS = [*SHARED, "birth_date", "sex", "id_number", "id_number_status"]


def is_in(table: pa.Table, column: str, values: list[str]) -> np.ndarray:
    """Per row, whether column's value is one of values (False for NULL and an absent column).
    A dictionary column is tested on its dictionaries and spread by the indices: no text decoded
    (14M decoded statuses and sexes took 0.7 GB at 5M persons)."""
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    col = table[column]
    if not pa.types.is_dictionary(col.type):
        return pc.fill_null(pc.is_in(text_column(table, column), value_set=pa.array(values, pa.large_string())),
                            False).to_numpy(zero_copy_only=False)
    out = [np.zeros(0, dtype=bool)]
    for chunk in col.chunks:
        hit = pc.fill_null(pc.is_in(chunk.dictionary, value_set=pa.array(values, chunk.dictionary.type)), False)
        hit = np.append(hit.to_numpy(zero_copy_only=False), False)   # the last slot: NULL
        out.append(hit[pc.fill_null(chunk.indices, len(chunk.dictionary)).to_numpy(zero_copy_only=False)])
    return np.concatenate(out)


def _days(table: pa.Table) -> np.ndarray:
    """Birth date as days since 1970 (own, else the one in a usable ID number); NaN if none."""
    usable = pa.array(is_in(table, "id_number_status", ["valid", "repaired"]))
    from_id = pc.strptime(pc.utf8_slice_codeunits(text_column(table, "id_number"), 6, 14), format="%Y%m%d",
                          unit="s", error_is_null=True)
    from_id = pc.if_else(usable, from_id, pa.scalar(None, from_id.type)).cast(pa.date32())
    if "birth_date" in table.column_names:
        own = table["birth_date"]
        if pa.types.is_timestamp(own.type) or pa.types.is_date64(own.type):
            own = own.cast(pa.date32())
        elif not pa.types.is_date32(own.type):
            own = pc.strptime(own.cast(pa.large_string()), format="%Y-%m-%d", unit="s",
                              error_is_null=True).cast(pa.date32())
        birth = pc.coalesce(own, from_id)
    else:
        birth = from_id
    return birth.cast(pa.int32()).cast(pa.float64()).fill_null(np.nan).to_numpy()


def _sexes(table: pa.Table) -> np.ndarray:
    """1 male, 2 female (own code, else the ID number's 17th digit), 0 unknown."""
    male, female = is_in(table, "sex", ["1"]), is_in(table, "sex", ["2"])
    usable = is_in(table, "id_number_status", ["valid", "repaired"])
    ids = text_column(table, "id_number")
    odd = pc.fill_null(pc.is_in(pc.utf8_slice_codeunits(ids, 16, 17),
                                value_set=pa.array(list("13579"), pa.large_string())), False)
    from_id = np.where(usable & pc.is_valid(ids).to_numpy(zero_copy_only=False),
                       np.where(odd.to_numpy(zero_copy_only=False), 1, 2), 0)
    return np.where(male, 1, np.where(female, 2, from_id)).astype(np.int64)


def persons_per_value(table: pa.Table, column: str = "phone", person: np.ndarray | None = None) -> np.ndarray:
    """Per record, the number of distinct persons (birth date, sex) seen with its value of
    column across the table; 1 where the record has no value or the value no dated record.
    person: the records' person codes (person_codes), when the caller has them already."""
    n = table.num_rows
    phone = value_codes(table, column)
    person = person_codes(table) if person is None else person
    known = (phone >= 0) & (person >= 0)
    out = np.ones(n, dtype=np.int64)
    if not known.any():
        return out
    base = int(person[known].max()) + 1
    # distinct (value, person) pairs by hashing (pandas): a sort (np.unique) cost 9x as much
    pairs = pd.unique(phone[known] * base + person[known])
    counts = np.bincount(pairs // base, minlength=int(phone.max()) + 1)
    has = phone >= 0
    out[has] = np.maximum(counts[phone[has]], 1)
    return out


def person_codes(table: pa.Table) -> np.ndarray:
    """Per record, a code of its (birth date, sex): days since the earliest birth date x 3 + sex;
    -1 where no birth date is known."""
    days = _days(table)
    dated = ~np.isnan(days)
    out = np.full(table.num_rows, -1, dtype=np.int64)
    if dated.any():
        day = days[dated].astype(np.int64)
        out[dated] = (day - day.min()) * 3 + _sexes(table)[dated]
    return out


def shared_counts(table: pa.Table) -> dict[str, np.ndarray]:
    """count column -> persons per value of its column, per record of table (see persons_per_value),
    as 32-bit integers: link_plan holds them for every record from its first step to its last
    (at 5M persons two 64-bit columns were 216 MB); with_counts widens them to the columns' int64."""
    person = person_codes(table)
    counts = {}
    for column, count in SHARED.items():
        release_memory()   # the text the last step parsed or hashed, back to the OS before the next
        counts[count] = persons_per_value(table, column, person).astype(np.int32)
    release_memory()
    return counts


def with_counts(table: pa.Table, counts: dict[str, np.ndarray]) -> pa.Table:
    """table with the given count columns (replaced in place when present, else appended)."""
    for count, values in counts.items():
        values = pa.array(values, pa.int64())
        if count in table.column_names:
            table = table.set_column(table.column_names.index(count), count, values)
        else:
            table = table.append_column(count, values)
    return table


def with_shared_counts(table: pa.Table) -> pa.Table:
    """table with its phone_persons and address_persons columns (replaced when present): link_plan
    adds them before a run's person records are split into partitions or cut to a scope."""
    return with_counts(table, shared_counts(table))
