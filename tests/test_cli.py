"""The command line: every project error ends as one line `error: ...` on stderr, status 1, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sfm_reweight import cli
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import write_pairs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def scene(tmp_path) -> tuple[Path, Path]:
    """Two image files and their pairs file (the runs below stop before decoding an image)."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.png"):
        (images / name).write_bytes(b"never decoded")
    write_pairs(tmp_path / "pairs.txt", [("a.png", "b.png")])
    return images, tmp_path / "pairs.txt"


def run_python(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def error_line(process: subprocess.CompletedProcess) -> str:
    """The one `error: ...` line of a failed run; its log lines (`[time] ...`) may come before."""
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr, process.stderr
    lines = [line for line in process.stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1 and lines[0].startswith("error: "), process.stderr
    return lines[0]


def test_a_bad_checkpoint_is_one_line(scene, tmp_path):
    images, pairs = scene
    weights = tmp_path / "broken.pt"
    weights.write_bytes(os.urandom(4096))
    process = run_python(
        [
            "-m",
            "sfm_reweight.match_dense",
            "--pairs",
            str(pairs),
            "--image_dir",
            str(images),
            "--export_dir",
            str(tmp_path / "out"),
            "--weights",
            str(weights),
        ]
    )
    line = error_line(process)
    assert str(weights) in line and "not a readable torch checkpoint" in line


def test_an_unknown_conf_key_is_one_line(scene, tmp_path):
    images, pairs = scene
    code = (
        "import sys; from pathlib import Path; from sfm_reweight import cli, match_dense; "
        "cli.run(match_dense.main, conf={'name': 'eloftr_reweight_lite',"
        " 'model': {'network': {'model': {'bogus_key': 1}}}}, "
        "pairs=Path(sys.argv[1]), image_dir=Path(sys.argv[2]), export_dir=Path(sys.argv[3]))"
    )
    process = run_python(["-c", code, str(pairs), str(images), str(tmp_path / "out")])
    line = error_line(process)
    assert "unknown key 'bogus_key' in matcher configuration lite.model" in line


def test_run_exits_on_one_line_and_lets_bugs_through():
    def bad_input():
        raise InputError("pairs.txt:3: line one\nline two")

    with pytest.raises(SystemExit) as exit_info:
        cli.run(bad_input)
    assert exit_info.value.code == "error: pairs.txt:3: line one; line two"  # sys.exit(str): status 1

    def bug():
        return {}["key"]  # a KeyError of a bug, not of a configuration: the traceback stays

    with pytest.raises(KeyError):
        cli.run(bug)
