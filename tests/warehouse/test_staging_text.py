"""Text columns become Arrow strings the same way whatever pandas holds them in: python- or
Arrow-backed strings, plain objects, JSON values (dicts and lists) and non-text values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from govdata.warehouse.staging import _string_array, to_arrow


def test_python_and_arrow_backed_strings_give_the_same_array_with_nulls():
    values = ["P1", None, "张三", ""]
    expected = pa.array(["P1", None, "张三", ""], pa.string())
    for dtype in ("string[python]", "string[pyarrow]", pd.StringDtype("python", na_value=np.nan), object):
        got = _string_array(pd.Series(values, dtype=dtype), is_json=False)
        assert got.equals(expected), dtype


def test_dicts_and_lists_in_a_text_column_are_json_and_other_values_their_text():
    lineage = pd.Series([{"gongan": ["1"]}, "already text", None, ["a", "é"]], dtype=object)
    assert _string_array(lineage, is_json=True).to_pylist() == [
        '{"gongan": ["1"]}', "already text", None, '["a", "é"]']
    assert _string_array(pd.Series([1, None, 2.5], dtype=object), is_json=False).to_pylist() == ["1", None, "2.5"]
    assert _string_array(pd.Series([7, None], dtype="Int64"), is_json=True).to_pylist() == ["7", None]


def test_a_frame_with_python_strings_and_json_lineage_converts_to_the_warehouse_schema():
    frame = pd.DataFrame({"person_id": pd.array(["P1", "P2"], dtype="string"),
                          "name": pd.array(["李四", None], dtype="string"),
                          "lineage": [{"gongan": ["1"]}, None], "record_count": [1, 2]})
    table = to_arrow("dim_person", frame)
    assert table.column("person_id").to_pylist() == ["P1", "P2"]
    assert table.column("name").to_pylist() == ["李四", None]
    assert table.column("lineage").to_pylist() == ['{"gongan": ["1"]}', None]
    assert table.column("address").null_count == 2
