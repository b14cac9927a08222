"""Shared phones and addresses: distinct persons (birth date, sex) per value, exact counts."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from govdata.transforms.linkage.plan import _split_by_partition
from govdata.transforms.linkage.shared_values import person_codes, persons_per_value, shared_counts


def _records() -> pa.Table:
    return pa.table({
        # a family phone (3 persons: two births and a second sex), one person's phone seen twice,
        # a value on an undated record, no value
        "phone": ["139", "139", "139", "139", "138", "138", "137", None],
        "address": ["A", "A", "B", "B", "B", None, "C", "C"],
        "birth_date": ["1980-01-02", "1980-01-02", "2010-05-06", "1980-01-02", "1990-03-04", "1990-03-04", None,
                       "1975-07-08"],
        "sex": ["1", "1", "1", "2", "2", "2", None, "1"],
        "id_number": [None] * 8,
        "id_number_status": [None] * 8,
    })


def test_persons_per_value_counts_distinct_birth_and_sex():
    table = _records()
    assert persons_per_value(table, "phone").tolist() == [3, 3, 3, 3, 1, 1, 1, 1]
    assert persons_per_value(table, "address").tolist() == [1, 1, 3, 3, 3, 1, 1, 1]
    counts = shared_counts(table)
    assert counts["phone_persons"].tolist() == [3, 3, 3, 3, 1, 1, 1, 1]
    assert counts["address_persons"].tolist() == [1, 1, 3, 3, 3, 1, 1, 1]


def test_person_codes_are_minus_one_without_a_birth_date():
    codes = person_codes(_records())
    assert codes[6] == -1 and (np.delete(codes, 6) >= 0).all()
    assert codes[0] == codes[1] != codes[3]          # same birth date, another sex
    assert codes[4] == codes[5]


def test_split_by_partition_keeps_each_partitions_rows_in_order():
    table = pa.table({"x": list(range(7))})
    parts = np.array([2, 0, 2, 5, 0, 2, 5])
    split = _split_by_partition(table, parts)
    assert {p: t["x"].to_pylist() for p, t in split.items()} == {0: [1, 4], 2: [0, 2, 5], 5: [3, 6]}
    assert _split_by_partition(table.slice(0, 0), parts[:0]) == {}


def test_is_in_reads_dictionaries_without_decoding_and_agrees_with_text():
    from govdata.transforms.linkage.shared_values import is_in

    values = ["valid", None, "repaired", "invalid", "valid"]
    plain = pa.table({"s": values})
    coded = pa.table({"s": pa.chunked_array([pa.array(values[:2]).dictionary_encode(),
                                             pa.array(values[2:]).dictionary_encode()])})
    want = [True, False, True, False, True]
    assert is_in(plain, "s", ["valid", "repaired"]).tolist() == want
    assert is_in(coded, "s", ["valid", "repaired"]).tolist() == want
    assert is_in(coded, "absent", ["valid"]).tolist() == [False] * 5


def test_person_codes_are_the_same_for_dictionary_columns():
    plain = _records().set_column(5, "id_number_status", pa.array(["valid"] * 4 + [None] * 4, pa.string())) \
        .set_column(4, "id_number", pa.array(["110105198001020013"] * 2 + ["110105201005060022"] * 2 + [None] * 4))
    coded = plain
    for column in ("sex", "id_number_status"):
        i = coded.column_names.index(column)
        coded = coded.set_column(i, column, pa.chunked_array([plain[column].slice(0, 3).combine_chunks().dictionary_encode(),
                                                              plain[column].slice(3).combine_chunks().dictionary_encode()]))
    assert person_codes(coded).tolist() == person_codes(plain).tolist()
    assert (person_codes(plain) >= 0).sum() == 7
