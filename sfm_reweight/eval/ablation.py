"""Ablation of the matchability reweighting at equal budget: one training configuration run with
reweighting off / bias / rescale / both (same data, steps and schedule) at each of several seeds,
each run scored on its validation (synthetic homography AUC@5 px, matchability AUROC of the
synthetic and, for `xfeat_mix`, of the real Oxford validation pairs) and on three real sets at 1024
px: Oxford affine (homography AUC@5 px, --enlarge), Middlebury (pose AUC@10 deg, --enlarge,
--repeats 5) and fountain-P11 pairs (pose AUC@5 deg, --repeats 5), SIFT beside them.

    sfm-reweight ablation --base xfeat_mix --steps 400 --seeds 0 1 --output outputs/ablation-xfeat
    # every run starts from XFeat's pretrained backbone under a neutral transformer (the recipe's init)
    sfm-reweight ablation --base lite_mix --steps 3000 --output outputs/ablation
    # interrupted? the same command resumes each run where it stopped; finished runs are only scored
    sfm-reweight ablation --steps 400 --base lite_mix_large --init_from lite.pt --output outputs/ablation-ft
    # fine-tuning instead: every run starts from lite.pt's network as plain EfficientLoFTR (its
    # gates and calibration dropped, each mode's own at identity), so all four start equal

Seed s sets the run's `seed` (the random initialisation) to s and its data seed to the recipe's
plus s (other pairs in another order). Writes OUTPUT/<mode>/seed<s>/ (training runs and weights),
OUTPUT/results.json and OUTPUT/table.md (per mode the mean over the seeds, each seed's value in
brackets), and prints the table. The real-data scores run sfm_reweight/eval/homography.py and
sfm_reweight/eval/relative_pose.py (their results.json files stay under OUTPUT/eval/).
"""

import json
import logging
import math
import subprocess
import sys
from pathlib import Path

from sfm_reweight import cli
from sfm_reweight.train import trainer
from sfm_reweight.train.logs import read_csv
from sfm_reweight.train.recipes import DEFAULT_PHOTOS, confs, with_reweight_mode
from sfm_reweight.utils.conf import merge
from sfm_reweight.utils import atomic

logger = logging.getLogger(__name__)

MODES = ("off", "bias", "rescale", "both")
OURS, SIFT = "eloftr_reweight_twoview", "opencv_sift"  # the matchers scored (match_dense conf names)
BENCHMARKS = {  # name: (pipeline, arguments, dataset folder, metric)
    "Oxford AUC@5px": ("homography", ["--resize", "1024", "--enlarge"], "oxford_affine", "auc@5"),
    "Middlebury AUC@10deg": (
        "relative_pose",
        ["--dataset", "middlebury", "--resize", "1024", "--enlarge", "--repeats", "5"],
        "middlebury_mview",
        "auc@10",
    ),
    "fountain AUC@5deg": (
        "relative_pose",
        ["--dataset", "strecha", "--resize", "1024", "--repeats", "5"],
        "strecha_fountain_p11",
        "auc@5",
    ),
}
VALIDATION = {  # name: column of the run's val.csv (last row, the exported moving average)
    "synthetic AUC@5px": "auc@5",
    "synthetic AUROC": "matchability_auroc",
    "Oxford-640 AUROC": "oxford_matchability_auroc",
}


def real_data_scores(matcher: str, network: str, weights: Path | None, data: Path, output: Path) -> dict[str, float]:
    """`matcher` (OURS with network conf `network` and `weights`, or SIFT) on the real sets, through
    the benchmark command lines."""
    options = [f"{OURS}.model.network.name={network}", f"{OURS}.model.weights={weights}"] if matcher == OURS else []
    scores = {}
    for name, (pipeline, arguments, folder, metric) in BENCHMARKS.items():
        out = output / f"{folder}-{matcher}"
        command = [
            sys.executable,
            "-m",
            f"sfm_reweight.eval.{pipeline}",
            "--root",
            str(data / folder),
            "--matchers",
            matcher,
            *arguments,
            "--output",
            str(out),
            *(["--options", *options] if options else []),
        ]
        subprocess.run(command, check=True)
        scores[name] = json.loads((out / "results.json").read_text())["matchers"][matcher][metric]
    return scores


def validation_scores(run: Path) -> dict[str, float]:
    """The last validation row of a training run (its end), as percentages (AUROC as is), and its mean s/step."""
    last = read_csv(run / "val.csv")[-1]
    seconds = [float(row["seconds"]) for row in read_csv(run / "log.csv")]
    scores = {
        name: float(last[column]) if last.get(column) not in (None, "") else math.nan
        for name, column in VALIDATION.items()
    }
    scores["synthetic AUC@5px"] *= 100
    return {**scores, "s/step": sum(seconds) / len(seconds)}


def seeded(conf: dict, seed: int) -> dict:
    """`conf` at seed `seed`: initialisation seed `seed`, data seed the recipe's plus `seed`."""
    return merge(conf, {"seed": seed, "data": {"seed": conf["data"]["seed"] + seed}}, "training configuration")


def cell(values: list[float], digits: int) -> str:
    """Mean of the seeds' values, each in brackets when there are several; '-' where none is defined."""
    if all(math.isnan(v) for v in values):
        return "-"
    mean = f"{sum(values) / len(values):.{digits}f}"
    return mean if len(values) == 1 else f"{mean} ({' / '.join(f'{v:.{digits}f}' for v in values)})"


def table(results: dict[str, list[dict[str, float]]], title: str) -> str:
    """Markdown table: one row per mode (and SIFT), one column per score."""
    columns = [*VALIDATION, *BENCHMARKS, "s/step"]
    lines = [f"| {title} | " + " | ".join(columns) + " |", "|---" + "|---:" * len(columns) + "|"]
    for name, rows in results.items():
        values = [
            cell([row.get(c, math.nan) for row in rows], 3 if "AUROC" in c else 2 if c == "s/step" else 1)
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def main(
    steps: int,
    output: Path,
    data: Path,
    base: str = "lite_mix",
    init_from: Path | None = None,
    seeds: tuple[int, ...] = (0,),
) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {}
    model_conf = confs[base]["model"]["name"]
    for mode in MODES:
        results[mode] = []
        for seed in seeds:
            conf = seeded(with_reweight_mode(merge(confs[base], {"steps": steps}), mode), seed)
            run = output / mode / f"seed{seed}"
            weights = run / f"{model_conf}_step{steps}.pt"
            if not weights.exists():
                weights = trainer.main(conf, run, init_from, init_plain=init_from is not None)
            scores = real_data_scores(OURS, model_conf, weights, data, output / "eval" / f"{mode}-seed{seed}")
            results[mode].append({**validation_scores(run), **scores})
    results[SIFT] = [real_data_scores(SIFT, model_conf, None, data, output / "eval")]
    start = f"from {init_from.name}, plain" if init_from else f"{base}'s start"
    text = table(results, f"reweighting ({steps} steps from {start}, seeds {', '.join(map(str, seeds))})")
    summary = {
        "steps": steps,
        "base": base,
        "seeds": list(seeds),
        "init_from": str(init_from) if init_from else None,
        "results": results,
    }
    atomic.write_text(output / "results.json", json.dumps(summary, indent=2))
    atomic.write_text(output / "table.md", text + "\n")
    print(text)
    return results


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--steps", type=int, required=True, help="training steps of every run (the equal budget)")
    parser.add_argument("--output", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--data", type=Path, default=DEFAULT_PHOTOS.parent, help="the shared data folder")
    parser.add_argument("--base", default="lite_mix", choices=sorted(confs), help="training configuration")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of each mode's runs (default: 0)")
    parser.add_argument(
        "--init_from", type=Path, help="weights every run starts from, as plain EfficientLoFTR (default: the recipe's)"
    )
    args = parser.parse_args(argv)
    cli.run(
        main,
        steps=args.steps,
        output=args.output,
        data=args.data,
        base=args.base,
        init_from=args.init_from,
        seeds=tuple(args.seeds),
    )


if __name__ == "__main__":
    command()
