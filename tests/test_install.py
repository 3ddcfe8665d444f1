"""The package as users install it: a wheel built from this checkout, installed (not editable) away
from the repository, runs the main job through its console script, and its report (made with the
viewer the wheel ships) opens in a browser where there is one."""

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers.browser import report_page, unavailable

REPO = Path(__file__).resolve().parent.parent


def test_wheel_runs_the_main_job_from_its_console_script(tmp_path):
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(REPO), "-w", str(dist)], check=True)
    (wheel,) = dist.glob("sfm_reweight-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import sfm_reweight; print(sfm_reweight.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)  # the wheel's copy, not this checkout
    run = subprocess.run(
        [str(site / "bin" / "sfm-reweight"), "reconstruct", "--output", "job"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "sfm_reweight INFO] reconstruct: 12/12 images registered" in run.stderr  # the package logger's format
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["matcher"] == "eloftr_reweight" and summary["registered"] == 12 and summary["points"] > 4000
    assert summary["camera_centres"]["median"] < 0.02  # metres; the views are about 0.6 m apart
    assert (tmp_path / "job" / "matchability.png").is_file()  # our network's maps of the best pair
    if unavailable() is None:
        with report_page(tmp_path / "job" / "report.html") as (page, errors, _):
            scene = page.evaluate("window.reportScene")
        assert errors == [] and scene["cameras"] == 12 and scene["points"] == summary["points"]
        assert scene["truth"] == 12 and scene["photos"] == 12
