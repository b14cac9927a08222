import pandas as pd
import pyarrow as pa

from govdata.lake import read_arrow, read_parquet, write_parquet


def test_stage_hand_offs_round_trip_as_arrow_ipc_and_outputs_stay_parquet(tmp_path):
    frame = pd.DataFrame({"source_record_id": ["1", "2", None], "score": [1.5, None, 3.0]})
    ipc = write_parquet(frame, str(tmp_path / "part.arrow"))
    parquet = write_parquet(frame, str(tmp_path / "out.parquet"))
    assert open(ipc, "rb").read(6) == b"ARROW1"
    assert open(parquet, "rb").read(4) == b"PAR1"
    for path in (ipc, parquet):
        pd.testing.assert_frame_equal(read_parquet(path), frame)
        assert read_arrow(path, columns=["score"]).column_names == ["score"]
    strings = read_parquet(ipc, arrow_strings=True)["source_record_id"]
    assert strings.dtype == pd.StringDtype("pyarrow") and strings.isna().tolist() == [False, False, True]


def test_an_empty_hand_off_keeps_its_schema(tmp_path):
    empty = pa.table({"person_id": pa.array([], pa.large_string())})
    path = write_parquet(empty, str(tmp_path / "empty.arrow"))
    assert read_arrow(path).schema == empty.schema and read_arrow(path).num_rows == 0
