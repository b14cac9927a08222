"""Value and key codes: equal values get equal codes whether a column is plain text or
dictionary-encoded (one dictionary per row group), NULL gets -1."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from govdata.transforms.linkage.partition import key_codes, partition_numbers, plain_text, value_codes


def _dictionary_chunks(*chunks: list) -> pa.ChunkedArray:
    """A dictionary column whose chunks each bring their own dictionary (as row groups do)."""
    return pa.chunked_array([pa.array(chunk, pa.string()).dictionary_encode() for chunk in chunks])


def _same_grouping(codes: np.ndarray, values: list) -> bool:
    """codes group the rows exactly as values do (NULL rows coded -1)."""
    for i, a in enumerate(values):
        if (codes[i] == -1) != (a is None):
            return False
        for j, b in enumerate(values):
            if a is not None and b is not None and (codes[i] == codes[j]) != (a == b):
                return False
    return True


def test_value_codes_agree_across_chunk_dictionaries_and_with_plain_text():
    values = ["甲路1号", "乙路2号", None, "乙路2号", "甲路1号", "丙路3号"]
    table = pa.table({"plain": pa.chunked_array([pa.array(values[:3]), pa.array(values[3:])]),
                      "coded": _dictionary_chunks(values[:3], values[3:])})
    plain, coded = value_codes(table, "plain"), value_codes(table, "coded")
    assert plain.dtype == coded.dtype == np.int64
    assert _same_grouping(plain, values) and _same_grouping(coded, values)
    assert value_codes(table, "absent").tolist() == [-1] * 6


def test_key_codes_combine_columns_and_a_null_in_any_gives_minus_one():
    names = ["zhang", "zhang", "li", "zhang", None]
    phones = ["138", "139", "138", "138", "138"]
    table = pa.table({"name": _dictionary_chunks(names), "phone": phones})
    codes = key_codes(("name", "phone"), lambda c: value_codes(table, c))
    pairs = [None if n is None else (n, p) for n, p in zip(names, phones)]
    assert _same_grouping(codes, pairs)
    assert codes[0] == codes[3] and len({codes[0], codes[1], codes[2]}) == 3 and codes[4] == -1


def test_plain_text_decodes_dictionary_columns_only():
    table = pa.table({"name": _dictionary_chunks(["a", None], ["b"]), "year": [1, 2, 3]})
    out = plain_text(table)
    assert out.schema.field("name").type == pa.large_string() and out.schema.field("year").type == pa.int64()
    assert out["name"].to_pylist() == ["a", None, "b"] and out["year"].to_pylist() == [1, 2, 3]


def test_partitions_are_the_same_for_dictionary_and_plain_columns():
    ids = [None, None, "110105198005120011", None, None, None]
    plain = pa.table({"id_number": ids,
                      "birth_date": pa.array([None, None, None, 365 * 10, None, None], pa.date32()),
                      "id_type": [None, "passport", "passport", None, None, None],
                      "doc_number": [None, "E1", "E1", None, None, None],
                      "name_pinyin": ["li", None, "li", "wang", "wang", "zhao"],
                      "phone": ["138", None, "138", "139", "139", None],
                      "address": [None, None, None, None, None, "甲路1号"]})
    coded = plain
    for name in ("id_type", "name_pinyin"):
        coded = coded.set_column(coded.column_names.index(name), name,
                                 _dictionary_chunks(plain[name].to_pylist()[:2], plain[name].to_pylist()[2:]))
    # record 0 borrows 1980 through name + phone, record 1 through its passport, record 4 1979
    # through name + phone; record 5 has nothing to borrow
    want = [1980 % 7, 1980 % 7, 1980 % 7, 1979 % 7, 1979 % 7, 0]
    assert partition_numbers(plain, 7).tolist() == want
    assert partition_numbers(coded, 7).tolist() == want
