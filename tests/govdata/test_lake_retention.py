from govdata.retention import RunFolder, plan_retention


def _folder(name: str, loaded: bool, started: float, newest: float | None = None) -> RunFolder:
    return RunFolder(name, f"/lake/{name}", loaded, started, newest if newest is not None else started)


def test_keeps_the_newest_runs_the_referenced_snapshot_and_runs_in_progress():
    folders = [_folder("r1", True, 100), _folder("r2", True, 200), _folder("killed", False, 250, 260),
               _folder("r3", True, 300), _folder("r4", True, 400), _folder("current", False, 500, 900),
               _folder("in_progress", False, 600, 950)]
    doomed = plan_retention(folders, "current", started=500, keep=2, referenced={"r1"})
    assert [(f.name, why) for f, why in doomed] == [("r2", "older than the last 2 run(s)"),
                                                    ("killed", "killed or failed run (no manifest)"),
                                                    ("r3", "older than the last 2 run(s)")]


def test_an_orphan_touched_after_the_current_run_began_is_left_alone():
    folders = [_folder("slow", False, 100, 700), _folder("current", False, 500, 900)]
    assert plan_retention(folders, "current", started=500, keep=1, referenced=set()) == []
