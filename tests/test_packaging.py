"""The wheel installs one top-level name, govdata; the layout's folders are its subpackages."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_the_govdata_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("govdata-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"govdata", wheel.name.split("-")[0] + "-"
                                                + wheel.name.split("-")[1] + ".dist-info"}
    for data in ("govdata/standards/elements.yaml", "govdata/standards/codes/region.csv",
                 "govdata/warehouse/marts/mart_sharing_use.sql", "govdata/templates/findings.html.j2",
                 "govdata/dags/govdata_pipeline.py", "govdata/static/vendor/README.md",
                 "govdata/demo_departments/canlian.yaml", "govdata/demo_reference/counties.csv",
                 "govdata/profiling.yaml"):
        assert data in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # -S: no site-packages, so neither the editable install nor the checkout can answer
    out = subprocess.run([sys.executable, "-S", "-c",
                          ("import govdata.transforms, govdata.warehouse, govdata.standards, "
                           "govdata.expectations; print(govdata.transforms.__file__)")],
                         check=False, cwd=tmp_path, env={"PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(site / "govdata" / "transforms" / "__init__.py")
