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
