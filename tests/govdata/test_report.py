import pandas as pd
import pytest

from govdata.report import _relative_to_page, bar_chart_svg, score_histogram


def test_bar_chart_escapes_labels_and_scales_to_the_largest():
    svg = bar_chart_svg({"gongan: <bad>": 10, "shebao": 5}, width=400)
    assert "&lt;bad&gt;" in svg and "<bad>" not in svg
    assert "width='130.0'" in svg and "width='65.0'" in svg   # (400 - 190 - 80) * share


def test_empty_chart_says_so():
    assert bar_chart_svg({}) == "<p class='muted'>nothing to show</p>"


def test_score_histogram_counts_every_score():
    counts = score_histogram(pd.Series([14.0, 15.0, 16.0, None]), bins=2)
    assert sum(counts.values()) == 3 and len(counts) == 2


def test_data_docs_link_is_relative_for_local_lakes_only():
    assert _relative_to_page("/l/r/report/data_docs/index.html", "/l/r/report/index.html") == "data_docs/index.html"
    assert _relative_to_page("s3://b/r/report/data_docs/index.html", "s3://b/r/report/index.html") == \
        "s3://b/r/report/data_docs/index.html"


def test_link_stage_seconds_count_the_plan_every_partition_and_the_merge():
    from govdata.report import stage_timings

    linked = {"plan_seconds": 1.5, "partition_seconds": [2.0, 3.25], "seconds": 0.5}
    timings = stage_timings([{"seconds": 1.0}, {"seconds": 2.0}], [{"seconds": 4.0}], {"seconds": 0.25}, linked,
                            {"seconds": 6.0}, {})
    assert timings == {"extract": 3.0, "normalise": 4.0, "snapshot": 0, "validate": 0.25, "link": 7.25, "load": 6.0,
                       "marts": 0}
    with_snapshots = stage_timings([{"seconds": 1.0}], [{"seconds": 4.0}], {}, {}, {}, {},
                                   [{"seconds": 0.5}, {"seconds": 0.25}])
    assert with_snapshots["normalise"] == 4.0 and with_snapshots["snapshot"] == 0.75


def test_wall_and_task_seconds_apart_and_start_up_counted_in_neither():
    from govdata.report import stage_clock

    # two extracts side by side (100.0-102.0 and 100.5-103.5), two normalises one after the other
    extracted = [{"seconds": 2.0, "started": 100.0, "finished": 102.0, "startup_seconds": 4.0, "peak_rss_mb": 900},
                 {"seconds": 3.0, "started": 100.5, "finished": 103.5, "startup_seconds": 5.0, "peak_rss_mb": 1200}]
    normalised = [{"seconds": 1.0, "started": 104.0, "finished": 105.0, "startup_seconds": 0.5, "peak_rss_mb": 2000},
                  {"seconds": 1.5, "started": 105.0, "finished": 106.5, "startup_seconds": 0.25}]
    # two snapshots one after the other, after the normalises
    snapshots = [{"seconds": 0.25, "started": 106.5, "finished": 106.75, "startup_seconds": 0.25},
                 {"seconds": 0.25, "started": 106.75, "finished": 107.0, "startup_seconds": 0.25}]
    validated = {"seconds": 2.0, "started": 107.0, "finished": 109.0, "startup_seconds": 6.0, "peak_rss_mb": 700,
                 "workers_peak_rss_mb": 900}   # its forked workers held more than the task itself
    # link: plan 1.0 s (no timestamps), partitions 110.0-113.0 side by side, merge 114.0-114.5
    linked = {"plan_seconds": 1.0, "partition_seconds": [3.0, 2.0], "seconds": 0.5, "started": 114.0,
              "finished": 114.5, "startup_seconds": 0.75, "inputs_span": [110.0, 113.0], "inputs_startup_seconds": 1.5,
              "peak_rss_mb": 1500, "inputs_peak_rss_mb": 3100}   # the largest partition (or the plan)
    loaded = {"seconds": 4.0, "started": 115.0, "finished": 119.0, "startup_seconds": 1.0, "peak_rss_mb": 2500}
    marted = {"seconds": 0.5, "started": 121.0, "finished": 121.5, "startup_seconds": 2.0}
    clock = stage_clock(extracted, normalised, validated, linked, loaded, marted, snapshots)
    assert clock == {
        "extract": {"wall_seconds": 3.5, "task_seconds": 5.0, "tasks": 2, "startup_seconds": 9.0, "peak_rss_mb": 1200},
        "normalise": {"wall_seconds": 2.5, "task_seconds": 2.5, "tasks": 2, "startup_seconds": 0.75,
                      "peak_rss_mb": 2000},
        "snapshot": {"wall_seconds": 0.5, "task_seconds": 0.5, "tasks": 2, "startup_seconds": 0.5, "peak_rss_mb": 0},
        "validate": {"wall_seconds": 2.0, "task_seconds": 2.0, "tasks": 1, "startup_seconds": 6.0, "peak_rss_mb": 900},
        "link": {"wall_seconds": 5.5, "task_seconds": 6.5, "tasks": 4, "startup_seconds": 2.25, "peak_rss_mb": 3100},
        "load": {"wall_seconds": 4.0, "task_seconds": 4.0, "tasks": 1, "startup_seconds": 1.0, "peak_rss_mb": 2500},
        "marts": {"wall_seconds": 0.5, "task_seconds": 0.5, "tasks": 1, "startup_seconds": 2.0, "peak_rss_mb": 0},
        "total": {"wall_seconds": 21.5, "task_seconds": 21.0, "tasks": 13, "startup_seconds": 21.5,
                  "peak_rss_mb": 3100},
    }


def test_stage_clock_without_timestamps_says_so_instead_of_guessing():
    from govdata.report import stage_clock

    clock = stage_clock([{"seconds": 1.0}], [{"seconds": 2.0}], {"seconds": 0.5}, {"seconds": 0.25}, {"seconds": 3.0}, {})
    assert {s: c["wall_seconds"] for s, c in clock.items()} == dict.fromkeys(
        ("extract", "normalise", "snapshot", "validate", "link", "load", "marts", "total"))
    assert clock["total"]["task_seconds"] == 6.75 and clock["marts"]["tasks"] == 0
    assert clock["snapshot"]["tasks"] == 0   # a manifest from before the snapshot was a task of its own


def test_each_stage_keeps_its_own_timing_when_snapshots_join_the_normalise_results():
    from govdata.stages import SNAPSHOT_KEYS, with_snapshots

    timing = {"seconds": 3.0, "started": 10.0, "finished": 13.0, "startup_seconds": 0.5}
    normalised = [{"source": "b", "rows_in": 1, **timing}, {"source": "a", "rows_in": 2, **timing}]
    snapshots = [{"source": s, "rows": 1, "current_path": f"{s}/current", "deleted_path": f"{s}/deleted",
                  "rows_deleted_at_source": 0, "changed_path": f"{s}/changed", "rows_changed": 1,
                  "seconds": 0.5, "started": 13.0, "finished": 13.5, "startup_seconds": 0.0} for s in ("b", "a")]
    joined = with_snapshots(normalised, snapshots)
    assert [j["source"] for j in joined] == ["a", "b"]                      # by name, whatever ran first
    assert all({k: j[k] for k in timing} == timing for j in joined)        # normalise's timing, untouched
    assert joined[0]["current_path"] == "a/current" and set(SNAPSHOT_KEYS) <= set(joined[1])
    assert normalised[1].keys() == {"source", "rows_in", *timing}         # inputs not changed in place
    with pytest.raises(KeyError, match="b"):
        with_snapshots(normalised, snapshots[1:])


def test_a_stage_times_its_work_after_its_imports(tmp_path, monkeypatch):
    import sys
    import time

    from govdata.stages.common import _body_imports, _inputs_span, _timed

    (tmp_path / "govdata_slow_import_probe.py").write_text("import time\ntime.sleep(0.4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "govdata_slow_import_probe", raising=False)

    def stage(parts):
        import govdata_slow_import_probe  # noqa: F401 - imported for its cost

        time.sleep(0.1)
        return {}

    assert _body_imports(stage) == ("govdata_slow_import_probe",)
    result = _timed(stage)([{"started": 5.0, "finished": 7.0, "startup_seconds": 1.25},
                            {"started": 6.0, "finished": 9.5, "startup_seconds": 0.5}])
    assert result["startup_seconds"] >= 0.4            # the import: start-up
    assert 0.1 <= result["seconds"] < 0.4               # the work alone
    assert result["finished"] == round(result["started"] + result["seconds"], 3)
    assert result["inputs_span"] == [5.0, 9.5] and result["inputs_startup_seconds"] == 1.75
    assert _inputs_span({"started": 1.0}) is None and _inputs_span([{"seconds": 1.0}]) is None


def test_each_stage_reports_its_own_peak_memory():
    """One process runs every stage under `govdata run`: each stage resets the high-water mark,
    so a small stage after a big one reports its own peak, not the big one's."""
    import numpy as np

    from govdata.stages.common import _timed

    @_timed
    def big(_inputs, _run):
        values = np.ones(50_000_000)   # 400 MB, touched
        values += 1
        return {}

    @_timed
    def small(_inputs, _run):
        return {}

    big_peak, small_peak = big(None, {})["peak_rss_mb"], small(None, {})["peak_rss_mb"]
    assert big_peak >= small_peak + 350
