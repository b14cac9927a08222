import pandas as pd

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
    assert timings == {"extract": 3.0, "normalise": 4.0, "validate": 0.25, "link": 7.25, "load": 6.0, "marts": 0}
