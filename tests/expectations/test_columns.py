from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest
from govdata.expectations.columns import NS_CEILING, NS_FLOOR, as_datetime_ns


def arrow_series(values: list, type_: pa.DataType) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.array(values, type_)])), name="d")


def test_arrow_dates_become_datetime64_ns_clipped_to_its_range_with_nulls_kept():
    dates = [dt.date(1422, 5, 1), dt.date(1887, 11, 12), dt.date(1970, 1, 1), dt.date(2517, 1, 1), None]
    out = as_datetime_ns(arrow_series(dates, pa.date32()), "s")
    assert (out.dtype, out.name) == ("datetime64[ns]", "d")
    assert out.tolist()[:4] == [NS_FLOOR, pd.Timestamp("1887-11-12"), pd.Timestamp("1970-01-01"), NS_CEILING]
    assert pd.isna(out.iloc[4])


@pytest.mark.parametrize(("unit", "micros"), [("s", 0), ("ms", 250_000), ("us", 250_001)])
def test_arrow_timestamps_keep_their_fraction_and_are_clipped(unit, micros):
    stamps = [dt.datetime(1500, 6, 1), dt.datetime(2009, 2, 13, 23, 31, 31, micros), None, dt.datetime(2300, 1, 1)]
    out = as_datetime_ns(arrow_series(stamps, pa.timestamp(unit)), "s")
    assert out.dtype == "datetime64[ns]"
    assert [out.iloc[0], out.iloc[1], out.iloc[3]] == [
        NS_FLOOR, pd.Timestamp(2009, 2, 13, 23, 31, 31, micros), NS_CEILING]
    assert pd.isna(out.iloc[2])


def test_arrow_nanosecond_timestamps_pass_unchanged():
    values = arrow_series([1_234_567_891_000_000_007, None], pa.timestamp("ns"))
    out = as_datetime_ns(values, "s")
    assert out.iloc[0] == pd.Timestamp(1_234_567_891_000_000_007, unit="ns") and pd.isna(out.iloc[1])


def test_tz_aware_arrow_timestamps_keep_their_zone():
    values = arrow_series([dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    out = as_datetime_ns(values, "s")
    assert isinstance(out.dtype, pd.DatetimeTZDtype) and out.iloc[0] == pd.Timestamp("2024-03-01 09:30", tz="UTC")


def test_a_lake_file_is_read_as_the_checks_take_it(tmp_path):
    """Repeating text comes as a Categorical from the file's own dictionaries, distinct text as
    Arrow strings, integers with nulls as float64, dates as Arrow dates; prepared, each column
    holds the same values as the file."""
    from govdata.expectations.columns import checked_text_frame, prepare_columns
    from govdata.lake import write_parquet

    rows = 3 * 1000
    frame = pd.DataFrame({
        "sex": pd.array(["1", "2", None] * 1000, dtype="string"),
        "id_number": pd.array([f"11010519491231{i:04d}" for i in range(rows)], dtype="string"),
        "days": pd.array([1, None, 3] * 1000, dtype="Int64"),
        "birth_date": [dt.date(1949, 12, 31), None, dt.date(1422, 5, 1)] * 1000,
    })
    path = write_parquet(frame, str(tmp_path / "people.parquet"), row_group_rows=1000)
    read = checked_text_frame(path, ["sex", "id_number", "days", "birth_date"])
    assert isinstance(read["sex"].dtype, pd.CategoricalDtype) and sorted(read["sex"].cat.categories) == ["1", "2"]
    assert read["id_number"].dtype == "string[pyarrow]"
    assert read["days"].dtype == "float64" and read["days"].isna().sum() == 1000
    assert isinstance(read["birth_date"].dtype, pd.ArrowDtype)
    types = {"sex": "code", "id_number": "id_number", "days": "integer", "birth_date": "date"}
    prepared = prepare_columns(read, types, "people")
    assert list(prepared.columns) == list(types) and len(prepared) == rows
    assert prepared["sex"].astype(object).where(prepared["sex"].notna(), None).tolist() == \
        frame["sex"].astype(object).where(frame["sex"].notna(), None).tolist()
    assert prepared["id_number"].tolist() == frame["id_number"].tolist()
    assert prepared["days"].iloc[0] == 1.0 and pd.isna(prepared["days"].iloc[1]) and prepared["days"].iloc[2] == 3.0
    assert prepared["birth_date"].dtype == "datetime64[ns]"
    assert prepared["birth_date"].iloc[:3].tolist()[::2] == [pd.Timestamp("1949-12-31"), NS_FLOOR]
    assert pd.isna(prepared["birth_date"].iloc[1])
