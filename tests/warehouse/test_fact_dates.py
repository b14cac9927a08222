"""dim_date's span comes from the facts' dates, read a chunk at a time from the lake."""
from datetime import date

import pandas as pd

from govdata.lake import write_parquet
from govdata.stages.load import SourceFrames
from govdata.warehouse import facts


def test_the_span_is_the_first_and_last_fact_day_over_every_chunk(tmp_path, monkeypatch):
    apps = pd.DataFrame({"source_system": "zhengwu", "source_record_id": ["1", "2", "3", "4", "5"],
                         "kind": "application",
                         "submitted_at": pd.to_datetime(["2021-03-01", None, "2019-07-04", "2022-01-01", None]),
                         "completed_at": pd.to_datetime([None, "2023-02-02", None, None, "2020-01-01"])})
    certs = pd.DataFrame({"source_system": "zhengzhao", "source_record_id": ["a", "b", "c"], "kind": "certificate",
                          "issue_date": pd.to_datetime(["2018-05-05", "2020-01-01", None]),
                          "expiry_date": pd.to_datetime(["2038-05-05", None, "2041-12-31"])})
    normalised = [{"source": name, "kind": kind, "current_path": write_parquet(frame, str(tmp_path / f"{name}.parquet"))}
                  for name, kind, frame in (("zhengwu", "application", apps), ("zhengzhao", "certificate", certs))]
    monkeypatch.setattr(facts, "FACT_CHUNK_ROWS", 2)
    assert facts._fact_dates(SourceFrames(normalised)) == (date(2018, 5, 5), date(2041, 12, 31))
    future_free = [n for n in normalised if n["source"] == "zhengwu"]
    assert facts._fact_dates(SourceFrames(future_free)) == (date(2019, 7, 4), date.today())
