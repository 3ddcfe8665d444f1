"""Ablation of the matchability reweighting at equal budget: `lite` trained with reweighting off /
bias / rescale / both (same data, steps, seed and schedule), each scored on the synthetic
validation pairs (homography AUC@5 px), Oxford affine (homography AUC@5 px) and Middlebury
(relative pose AUC@10 deg), both at 1024 px long side, SIFT beside them on the real sets.

    python pipelines/ablation.py --steps 3000 --output outputs/ablation
    # interrupted? the same command resumes each run where it stopped; finished runs are only scored
    python pipelines/ablation.py --steps 400 --base lite_mix_large --init-from lite.pt --output outputs/ablation-ft
    # fine-tuning instead: every run starts from lite.pt's network as plain EfficientLoFTR (its
    # gates and calibration dropped, each mode's own at identity), so all four start equal

Writes OUTPUT/<mode>/ (training runs, `lite_step<N>.pt` weights), OUTPUT/results.json and
OUTPUT/table.md, and prints the table. The real-data scores run pipelines/homography.py and
pipelines/relative_pose.py (their results.json files stay under OUTPUT/eval/).
"""

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import torch

from sfm_reweight.eval.matchers import default_label
from sfm_reweight.model.weights import model_from_checkpoint
from sfm_reweight.train import trainer
from sfm_reweight.train.recipes import DEFAULT_PHOTOS, confs, with_reweight_mode
from sfm_reweight.train.validation import validate, validation_pairs
from sfm_reweight.utils.conf import merge
from sfm_reweight.utils import atomic

logger = logging.getLogger("ablation")

REPO = Path(__file__).resolve().parents[1]
MODES = ("off", "bias", "rescale", "both")
BENCHMARKS = {  # name: (script, arguments, dataset folder, metric)
    "oxford AUC@5px": ("homography.py", ["--resize", "1024"], "oxford_affine", "auc@5"),
    "middlebury AUC@10deg": ("relative_pose.py", ["--dataset", "middlebury", "--resize", "1024"], "middlebury_mview", "auc@10"),
}


def real_data_scores(matcher: str, weights: Path | None, data: Path, output: Path) -> dict[str, float]:
    """`matcher` ("ours" with `weights`, or "sift") on the two real sets, through the benchmark CLIs."""
    scores = {}
    for name, (script, arguments, folder, metric) in BENCHMARKS.items():
        out = output / f"{folder}-{matcher}"
        command = [sys.executable, str(REPO / "pipelines" / script), "--root", str(data / folder), "--matchers", matcher,
                   *arguments, "--output", str(out), "--weights", str(weights) if weights else "none"]
        subprocess.run(command, check=True)
        scores[name] = json.loads((out / "results.json").read_text())["matchers"][default_label(matcher)][metric]
    return scores


def main(steps: int, output: Path, data: Path, base: str = "lite_mix", init_from: Path | None = None) -> dict[str, dict[str, float]]:
    results = {}
    for mode in MODES:
        conf = with_reweight_mode(merge(confs[base], {"steps": steps}), mode)
        run = output / mode
        weights = run / f"{conf['model']['name']}_step{steps}.pt"
        if not weights.exists():
            weights = trainer.main(conf, run, init_from, init_plain=True)
        model, _ = model_from_checkpoint(weights)
        synthetic = validate(model, validation_pairs(conf), torch.device("cpu"))
        results[mode] = {"synthetic AUC@5px": 100 * synthetic["auc@5"], **real_data_scores("ours", weights, data, output / "eval")}
    results[default_label("sift")] = {"synthetic AUC@5px": None, **real_data_scores("sift", None, data, output / "eval")}
    columns = ["synthetic AUC@5px", *BENCHMARKS]
    start = f"from {init_from.name}, plain" if init_from else "from scratch"
    lines = [f"| reweighting ({steps} steps {start}) | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join("-" if row[c] is None else f"{row[c]:.1f}" for c in columns) + " |")
    table = "\n".join(lines)
    summary = {"steps": steps, "base": base, "init_from": str(init_from) if init_from else None, "results": results}
    atomic.write_text(output / "results.json", json.dumps(summary, indent=2))
    atomic.write_text(output / "table.md", table + "\n")
    print(table)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, required=True, help="training steps of every run (the equal budget)")
    parser.add_argument("--output", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--data", type=Path, default=DEFAULT_PHOTOS.parent, help="the shared data folder")
    parser.add_argument("--base", default="lite_mix", choices=sorted(confs), help="training configuration")
    parser.add_argument("--init-from", type=Path, help="weights every run starts from, as plain EfficientLoFTR (default: scratch)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args()
    main(args.steps, args.output, args.data, args.base, args.init_from)
