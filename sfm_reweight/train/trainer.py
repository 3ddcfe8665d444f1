"""Training loop: resumable, NaN-guarded, logged; `python -m sfm_reweight.train.trainer --help`.

    python -m sfm_reweight.train.trainer --conf lite_mix --output outputs/train/lite
    # interrupted? the same command resumes from outputs/train/lite/last.pt (step, optimizer,
    # scheduler and data position); --fresh starts over (the old run is kept as last.pt.bak).

Every `checkpoint_every` steps, and on Ctrl-C / SIGTERM, `last.pt` is written atomically. The data
at step s are the dataset items s*batch .. s*batch+batch-1, each deterministic, so a resumed run
sees exactly what an uninterrupted one would. Logs: `log.csv` (one row per step) and `loss.png`;
`val.csv` with the homography AUC on a fixed set of synthetic pairs.
"""

import argparse
import copy
import dataclasses
import csv
import io
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..metrics import auroc, corner_error, error_auc, ransac_homography
from ..matcher import confs as matcher_confs
from ..model.config import resolve_conf
from ..model.eloftr import COARSE_STRIDE, ELoFTR
from ..model.weights import load_weights, save_checkpoint
from ..utils import atomic
from ..utils.conf import merge
from .data_mix import StepBatches, as_is, build_sources, collate
from .homography_pairs import HomographyPairConf
from .real_validation import oxford_validation_pairs
from .losses import coarse_loss, coarse_negative_loss, fine_loss, matchability_loss, subpixel_loss
from .supervision import coarse_supervision, fine_supervision
from .synthetic_pairs import SyntheticPairConf
from .warps import HomographyWarp, warp_from_batch

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SFM_REWEIGHT_DATA", REPO.parent / "shared" / "data"))
DEFAULT_PHOTOS = DATA / "train_pool"
MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up

def pair_options(dataclass_type) -> dict:
    """The defaults of a synthetic pair kind's conf, but the fields the data section sets for all kinds."""
    return {f.name: f.default for f in dataclasses.fields(dataclass_type) if f.name not in ("size", "seed")}


confs = {
    "lite_homography": {
        "model": resolve_conf("lite"),  # a model configuration (model/config.py), resolved
        # weights the run starts from (a path, a shipped name, or "xfeat"); --init-from overrides
        "init_from": None,
        # mix: the share of steps of each kind of pairs (0: not used); homography / synthetic: the
        # fields of HomographyPairConf / SyntheticPairConf but size and seed; megadepth, scannet: data_mix.py
        "data": {
            "folder": str(DEFAULT_PHOTOS), "size": [320, 256], "seed": 0,
            "mix": {"homography": 1.0, "synthetic": 0.0, "megadepth": 0.0, "scannet": 0.0},
            "homography": pair_options(HomographyPairConf), "synthetic": pair_options(SyntheticPairConf),
            "megadepth": {"root": None, "scene_infos": [], "resize": 832},
            "scannet": {"root": None, "index": None, "intrinsics": None},
        },
        "steps": 20000,
        "batch_size": 4,
        "lr": 1e-3,
        "weight_decay": 0.1,
        # the two scalars of the matchability calibration: Adam moves a parameter ~lr per step, and
        # the offset has to travel several logits (raw maps sit near 1e-3); not decayed toward 0
        "calibration_lr": 1e-2,
        # the attention gates, scalars from 0 that settle at |0.1-0.5|: at `lr` they need thousands
        # of steps to get there, which a short fine-tuning (the ablation) does not have
        "gate_lr": 3e-3,
        "warmup_steps": 300,
        "min_lr_ratio": 0.05,
        "grad_clip": 1.0,
        # coarse_negative: losses.coarse_negative_loss, off in the official recipe (and not computed at 0)
        "loss_weights": {"coarse": 1.0, "fine": 1.0, "subpixel": 0.25, "matchability": 1.0, "coarse_negative": 0.0},
        "seed": 0,
        "checkpoint_every": 100,
        "val_every": 500,
        "val_pairs": 24,
        # real pairs validated beside the synthetic ones (real_validation.py): Oxford sequences 1-2..1-4
        # of this folder, if it exists, at the training views' size; their metrics are prefixed "oxford_"
        "val_oxford": None,
        # validation at the shipped Matcher's coarse threshold (matcher.confs["lite"]), not at the
        # network's default 0.2, where a CPU-trained network keeps a few dozen matches per pair and
        # val.csv swings without a trend; so val.csv reads like the `--validate 0.02` figures
        "val_coarse_threshold": matcher_confs["lite"]["model"]["match_coarse"]["thr"],
        # bf16 autocast of the network on a GPU, and on CPUs with native bf16 (AVX512-BF16 / AMX)
        "mixed_precision": True,
        "ema_decay": 0.999,  # the exported and validated weights are this moving average
        # bitwise-reproducible steps (CPU index_put accumulation is otherwise order-dependent),
        # so that a resumed run equals an uninterrupted one
        "deterministic": True,
    },
}
# Homography pairs (planar, any rotation and zoom) and rendered 3D scenes (parallax, occlusion).
confs["lite_mix"] = merge(confs["lite_homography"], {"data": {"mix": {"homography": 0.5, "synthetic": 0.5}}})
# Second stage, started with --init-from a lite_mix run's weights: a lower learning rate (lite_mix's
# loss stops falling at ~1e-3 with batches of 4) on mostly upright pairs (relative rotation up to
# 45 deg, a tenth of them any angle; the Matcher's rotation search covers right angles), and views
# down to about the photos' own resolution: lite_mix's views shrink the photos 1.4-3x, and at 1024 px
# its network failed on close-up texture (Oxford wall) that it matched at 640 px.
confs["lite_mix_upright"] = merge(confs["lite_mix"], {
    "steps": 2000, "lr": 3e-4, "warmup_steps": 50,
    "data": {"seed": 1, "homography": {"full_rotation_prob": 0.1, "max_rotation": 45.0, "coverage": (0.15, 0.8), "min_scale": 0.75}},
})

# Third stage, --init-from the second's weights: views of 640x480 (4800 coarse cells) instead of
# 320x256 (1280): at ~1000 px (10^4 cells) the second stage's coarse confidences were tiny and
# most pairs of a real scene kept a few dozen matches. One pair per step keeps a CPU step ~3 s.
confs["lite_mix_large"] = merge(confs["lite_mix_upright"], {"batch_size": 1, "data": {"size": [640, 480], "seed": 2}})
# Fourth stage, --init-from the third's weights: the same views on a longer schedule (its 2000 steps
# raised Oxford AUC@5 from 37.9 to 44.0 while its training loss stayed flat), run across sessions.
confs["lite_mix_large_long"] = merge(confs["lite_mix_large"], {"steps": 8000, "data": {"seed": 3}})
# The fourth stage plus the loss on cells without a correspondent (losses.coarse_negative_loss),
# --init-from the shipped stage-4 weights: stage 5's recipe (2200 steps, pairs of seed 5) with that one
# change, so that its figures compare with stage 5's. Why: the shipped weights match sky, trees and
# crowd confidently to the facade where two Sacre Coeur views share little (README), and 36.6 % of their
# matches on the validation pairs have no correspondent at all (`no_correspondent_share`). Weight 5:
# per cell, -log(1 - P) pulls a logit by ~2P (~0.06 at the P ~ 0.03 those cells reach) against ~0.5
# for a positive's focal term, so at weight 1 the new term would be nearly an order of magnitude weaker.
# Measured: it lowered confidences everywhere, not the share, and lost on Oxford and Middlebury (README).
confs["lite_mix_large_negatives"] = merge(
    confs["lite_mix_large_long"], {"steps": 2200, "loss_weights": {"coarse_negative": 5.0}, "data": {"seed": 5}}
)
# The fourth stage on a lent GPU (pipelines/device_training.sh), --init-from the last shipped
# weights: 16 pairs per step, the learning rate ~sqrt-scaled from one pair's 3e-4 but kept below
# the full 1.2e-3 (a fine-tuning), no bitwise determinism (CUDA's deterministic scatter is slow).
# The device script sets --steps to what its time limit allows at the measured speed, so that the
# schedule decays to its end within the run.
# XFeat's pretrained backbone, frozen, under the lite transformer at its width (model conf "xfeat"):
# the transformer starts as the identity and the coarse matches as XFeat's, so the run trains the
# projection, transformer, reweighting and fine stage on top of descriptors learned on real
# multi-view data; lite_mix_large's views and pairs, real Oxford pairs validated in the loop.
confs["xfeat_mix"] = merge(
    confs["lite_mix_large"],
    {"model": resolve_conf("xfeat"), "init_from": "xfeat", "steps": 3000, "lr": 1e-3, "warmup_steps": 100,
     "val_every": 250, "val_oxford": str(DATA / "oxford_affine"), "data": {"seed": 6}},
)
confs["lite_mix_large_gpu"] = merge(
    confs["lite_mix_large_long"],
    {"steps": 1500, "batch_size": 16, "lr": 8e-4, "warmup_steps": 100, "deterministic": False, "data": {"seed": 4}},
)


def lr_factor(step: int, conf: dict) -> float:
    """Linear warm-up from 10%, then cosine decay to `min_lr_ratio`."""
    if step < conf["warmup_steps"]:
        return 0.1 + 0.9 * step / conf["warmup_steps"]
    progress = min(1.0, (step - conf["warmup_steps"]) / max(1, conf["steps"] - conf["warmup_steps"]))
    return conf["min_lr_ratio"] + (1 - conf["min_lr_ratio"]) * 0.5 * (1 + math.cos(math.pi * progress))


def bf16_is_native(device: torch.device) -> bool:
    """Whether bf16 autocast speeds this device up (on older CPUs it would emulate and slow down)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()


def exponential_average(model: ELoFTR, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """Moving average of the weights (and BatchNorm statistics): smoother than the last step's
    weights while the learning rate is still high, so it is what gets validated and exported. The
    decay after n updates is min(decay, (1 + n) / (10 + n)), so that the average forgets the random
    initialisation within the first hundreds of steps instead of thousands."""

    def average(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        n = float(num_averaged)
        return averaged + (current - averaged) * (1 - min(decay, (1 + n) / (10 + n)))

    return torch.optim.swa_utils.AveragedModel(model, avg_fn=average, use_buffers=True)


def training_losses(model: ELoFTR, batch: dict, weights: dict, amp: bool = False) -> dict[str, torch.Tensor]:
    """All loss terms for one batch (homography or depth pairs, padded or not), and their
    weighted sum under "total". `amp` runs the network under bf16 autocast; the supervision
    (pixel coordinates and cell indices) and the losses stay in fp32."""
    warp = warp_from_batch(batch)
    image0, image1 = batch["image0"], batch["image1"]
    mask0, mask1 = batch.get("mask0"), batch.get("mask1")
    hw0 = (image0.shape[-2] // COARSE_STRIDE, image0.shape[-1] // COARSE_STRIDE)
    hw1 = (image1.shape[-2] // COARSE_STRIDE, image1.shape[-1] // COARSE_STRIDE)
    coarse_gt = coarse_supervision(warp, len(image0), hw0, hw1, COARSE_STRIDE, mask0, mask1)
    gt_ids = (coarse_gt.b_ids, coarse_gt.i_ids, coarse_gt.j_ids)
    with torch.autocast(image0.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(image0, image1, mask0, mask1, gt_coarse_ids=gt_ids)
    out = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in out.items()}
    fine_conf = model.conf["match_fine"]
    fine_gt = fine_supervision(warp, *out["coarse_ids"], hw0[1], hw1[1], fine_conf["window"], COARSE_STRIDE)
    terms = {
        "coarse": coarse_loss(out["coarse_dual_softmax"], coarse_gt),
        "fine": fine_loss(out["conf_matrix_f"], fine_gt),
        "subpixel": subpixel_loss(out["sim_matrix_ff"], fine_gt, fine_conf["temperature"], fine_conf["official_block"]),
    }
    if out["matchability0"] is not None:
        terms["matchability"] = matchability_loss(out["matchability0"], out["matchability1"], coarse_gt, mask0, mask1)
    if weights["coarse_negative"] > 0:
        terms["coarse_negative"] = coarse_negative_loss(out["coarse_dual_softmax"], coarse_gt)
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms


@torch.no_grad()
def validate(model: ELoFTR, pairs: list[dict], device: torch.device) -> dict[str, float]:
    """Homography AUC@3/5/10 px (corner error of a RANSAC fit), matches and precision@3px per pair,
    the median error of the matches within 3 px over all pairs (the fine stage's accuracy: 0.40 px
    for points exact to the pixel, rounding alone), and the AUROC of the matchability maps against
    the ground-truth matchable cells of all pairs (0.5: the maps carry no information; nan when
    reweighting is off), and the share of matches whose image-0 point has no correspondent in image 1
    (`Warp.no_correspondent`, one coarse cell of margin): matches that cannot be right."""
    was_training = model.training
    model.eval()
    errors, matches, precision, map_scores, map_labels, fine_errors, unmatched = [], [], [], [], [], [], []
    for item in pairs:
        out = model(item["image0"][None].to(device), item["image1"][None].to(device))
        k0, k1 = out["keypoints0"].cpu().numpy(), out["keypoints1"].cpu().numpy()
        H = item["H_0to1"].numpy().astype(np.float64)
        h, w = item["image0"].shape[-2:]
        errors.append(corner_error(ransac_homography(k0, k1), H, w, h))
        matches.append(len(k0))
        warp = HomographyWarp(item["H_0to1"][None], item["valid0"][None], item["valid1"][None])
        if len(k0):
            zeros = torch.zeros(len(k0), dtype=torch.long)
            projected, valid = warp(torch.from_numpy(k0), zeros)
            distance = (projected - torch.from_numpy(k1)).norm(dim=1)
            correct = (distance <= 3) & valid
            precision.append(float(correct.sum() / len(k0)))
            fine_errors.append(distance[correct])
            unmatched.append(float(warp.no_correspondent(torch.from_numpy(k0), zeros, COARSE_STRIDE).float().mean()))
        if out["matchability0"] is not None:
            grids = [tuple(out[f"matchability{k}"].shape[-2:]) for k in (0, 1)]
            gt = coarse_supervision(warp, 1, *grids, COARSE_STRIDE)
            map_scores += [out["matchability0"].flatten().cpu(), out["matchability1"].flatten().cpu()]
            map_labels += [gt.matchable0.flatten(), gt.matchable1.flatten()]
    model.train(was_training)
    auc = error_auc(errors, [3, 5, 10])
    fine_errors = torch.cat(fine_errors) if fine_errors else torch.zeros(0)
    map_auroc = auroc(torch.cat(map_scores).numpy(), torch.cat(map_labels).numpy()) if map_scores else float("nan")
    return {"auc@3": auc[3], "auc@5": auc[5], "auc@10": auc[10], "matches": float(np.mean(matches)),
            "precision@3px": float(np.mean(precision)) if precision else 0.0,
            "fine_error_px": float(fine_errors.median()) if len(fine_errors) else float("nan"),
            "matchability_auroc": map_auroc,
            "no_correspondent_share": float(np.mean(unmatched)) if unmatched else 0.0}


def validation_pairs(conf: dict) -> list[dict]:
    """The fixed synthetic validation set of a training configuration: `val_pairs` homography
    pairs drawn with a seed no training step uses."""
    data = build_sources({**conf["data"], "mix": {"homography": 1.0}}, seed_offset=10_000)["homography"]
    return [data[k] for k in range(conf["val_pairs"])]


class Interrupted(Exception):
    pass


def append_csv(path: Path, row: dict) -> None:
    """Append a row; a log written by an older version with fewer columns is rewritten first with
    the new header (its rows keep empty cells there), so that a resumed run's log stays one table."""
    if path.exists():
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if missing := [k for k in row if k not in header]:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            header = header + missing
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
            atomic.write_text(path, text.getvalue())
    else:
        header = list(row)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        if f.tell() == 0:
            writer.writeheader()
        writer.writerow(row)


def plot_losses(log: Path, path: Path) -> None:
    from matplotlib.figure import Figure

    rows = list(csv.DictReader(open(log)))
    if not rows:
        return
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    steps = np.array([int(r["step"]) for r in rows])
    for key in [k for k in rows[0] if k not in ("step", "lr", "seconds")]:
        values = np.array([float(r[key]) for r in rows])
        window = max(1, len(values) // 50)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, label=key)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.legend()
    fig.savefig(path, dpi=100)


def parameter_groups(model: ELoFTR, conf: dict) -> list[dict]:
    """The network at `lr` with weight decay; the reweighting scalars (gates, map calibration) at their
    own rates and without decay toward 0."""
    reweighting = set(model.reweighting_parameter_names())
    calibration = set(model.calibration_parameter_names())
    gates = reweighting - calibration
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # a frozen backbone is not optimised
    return [
        {"params": [p for n, p in named if n not in reweighting], "lr": conf["lr"], "weight_decay": conf["weight_decay"]},
        {"params": [p for n, p in named if n in gates], "lr": conf["gate_lr"], "weight_decay": 0.0},
        {"params": [p for n, p in named if n in calibration], "lr": conf["calibration_lr"], "weight_decay": 0.0},
    ]


def main(
    conf: dict,
    output: Path,
    init_from: Path | None = None,
    init_plain: bool = False,
    fresh: bool = False,
    max_steps: int | None = None,
    workers: int | None = None,
) -> Path:
    """Train (or resume) into `output`; returns the path of the fp16 weights written at the end.
    `init_plain`: start from `init_from` as plain EfficientLoFTR (its reweighting dropped, ours at identity).
    `workers`: processes preparing batches ahead (default: none on a CPU of 2 cores or fewer, else
    all cores but two, up to 14); the batches, and so the run, are the same whatever their number."""
    output.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    last = output / "last.pt"
    if fresh and last.exists():
        last.replace(output / "last.pt.bak")
    torch.manual_seed(conf["seed"])
    # channels-last convolutions: oneDNN's native layout, a third faster per CPU training step
    model = ELoFTR(conf["model"]).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(parameter_groups(model, conf))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, conf))
    step, state = 0, None
    init_from = init_from or conf["init_from"]
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        if state["conf"] != conf:
            raise ValueError(f"{last}: was trained with another configuration; use --fresh or another --output")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        step = state["step"]
        logger.info("resumed %s at step %d", last, step)
    elif init_from is not None:
        report = load_weights(model, init_from, plain=init_plain)
        # loading an official checkpoint selects its sub-pixel indexing; training uses the conf's
        model.conf["match_fine"]["official_block"] = resolve_conf(conf["model"])["match_fine"]["official_block"]
        logger.info("initialised from %s (%s layout)", init_from, report.layout)
    ema = exponential_average(model, conf["ema_decay"])  # a copy of the weights as loaded
    if state is not None:
        ema.load_state_dict(state["ema"])

    data_conf = conf["data"]
    sources = build_sources(data_conf)
    val_pairs = validation_pairs(conf)
    oxford = conf["val_oxford"]
    real_pairs = oxford_validation_pairs(oxford, conf["data"]["size"]) if oxford and Path(oxford).is_dir() else []
    amp = conf["mixed_precision"] and bf16_is_native(device)

    def save() -> None:
        atomic.torch_save(
            {"conf": conf, "step": step, "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
            last,
        )

    def on_signal(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_signal)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_filling = torch.utils.deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(conf["deterministic"], warn_only=True)
    # deterministic mode would also NaN-fill every new tensor, a tenth of a CPU step, for nothing:
    # no result here reads memory it has not written
    torch.utils.deterministic.fill_uninitialized_memory = False
    end = conf["steps"] if max_steps is None else min(conf["steps"], step + max_steps)
    bad_steps = 0
    model.train()
    progress = tqdm(total=end, initial=step, desc="train", dynamic_ncols=True)
    if workers is None:
        cores = os.cpu_count() or 1
        workers = 0 if cores <= 2 else min(14, cores - 2)
    batches = iter(DataLoader(
        StepBatches(sources, data_conf, conf["batch_size"], step, end), batch_size=None, num_workers=workers,
        collate_fn=as_is, prefetch_factor=4 if workers else None,
        generator=torch.Generator(),  # its seed draw must not consume the global RNG the model samples from
    ))
    try:
        while step < end:
            start = time.time()
            batch = collate(next(batches), device)
            terms = training_losses(model, batch, conf["loss_weights"], amp)
            if not torch.isfinite(terms["total"]):
                bad_steps += 1
                logger.warning("step %d: non-finite loss %s, batch skipped", step, {k: float(v) for k, v in terms.items()})
                if bad_steps >= MAX_BAD_STEPS:
                    raise FloatingPointError(f"{bad_steps} consecutive non-finite losses at step {step}; stopping")
                step += 1
                continue
            bad_steps = 0
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), conf["grad_clip"])
            optimizer.step()
            scheduler.step()
            ema.update_parameters(model)
            step += 1
            row = {"step": step, **{k: round(v.item(), 5) for k, v in terms.items()},
                   "lr": scheduler.get_last_lr()[0], "seconds": round(time.time() - start, 3)}
            append_csv(output / "log.csv", row)
            progress.update(1)
            progress.set_postfix(loss=f"{row['total']:.3f}")
            if step % conf["checkpoint_every"] == 0 or step == end:
                save()
                plot_losses(output / "log.csv", output / "loss.png")
            if step % conf["val_every"] == 0 or step == end:
                thr = conf["val_coarse_threshold"]
                averaged = at_coarse_threshold(ema.module, thr)
                metrics = validate(averaged, val_pairs, device)
                if real_pairs:
                    metrics |= {f"oxford_{k}": v for k, v in validate(averaged, real_pairs, device).items()}
                append_csv(output / "val.csv", {"step": step, "thr": thr, **metrics})
                logger.info("step %d validation: %s", step, metrics)
    except (KeyboardInterrupt, Interrupted):
        logger.info("interrupted at step %d: saving %s", step, last)
        save()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        torch.use_deterministic_algorithms(was_deterministic)
        torch.utils.deterministic.fill_uninitialized_memory = was_filling
        progress.close()
    weights = save_checkpoint(ema.module, output / f"{conf['model']['name']}_step{step}.pt", half=True, step=step)
    logger.info("trained to step %d; weights (fp16, moving average): %s", step, weights)
    return weights


def with_coarse_threshold(model_conf: str | dict, coarse_threshold: float | None) -> str | dict:
    """A model configuration with another coarse threshold (None: as it is)."""
    if coarse_threshold is None:
        return model_conf
    return merge(resolve_conf(model_conf), {"match_coarse": {"thr": coarse_threshold}})


def at_coarse_threshold(model: ELoFTR, coarse_threshold: float) -> ELoFTR:
    """A copy of `model` that keeps coarse matches above another threshold. Copied, not built anew:
    building would draw initial weights from the global RNG, and a resumed run would then differ."""
    clone = copy.deepcopy(model)
    clone.conf["match_coarse"]["thr"] = coarse_threshold
    return clone


def averaged_model(state: dict, coarse_threshold: float | None = None) -> ELoFTR:
    """The moving-average network of a training state, optionally with another coarse threshold."""
    model_conf = with_coarse_threshold(state["conf"]["model"], coarse_threshold)
    ema = exponential_average(ELoFTR(model_conf), state["conf"]["ema_decay"])
    ema.load_state_dict(state["ema"])
    return ema.module


def export(last: Path, path: Path) -> Path:
    """Write the moving-average weights of a training state (`last.pt`, possibly of a run still
    going) as an fp16 checkpoint in our format."""
    state = torch.load(last, map_location="cpu", weights_only=False)
    return save_checkpoint(averaged_model(state), path, half=True, step=state["step"])


def validate_state(last: Path, coarse_thresholds: list[float]) -> list[dict[str, float]]:
    """Validation metrics of a training state's averaged weights at each coarse threshold: early in
    training, confidences stay below the default 0.2 long before the matches become right."""
    state = torch.load(last, map_location="cpu", weights_only=False)
    pairs = validation_pairs(state["conf"])
    return validate_at_thresholds(lambda thr: averaged_model(state, thr), pairs, coarse_thresholds, state["step"])


def validate_checkpoint(weights: Path, conf: dict, coarse_thresholds: list[float]) -> list[dict[str, float]]:
    """The same for a checkpoint (e.g. an export or the shipped weights) on `conf`'s validation pairs."""
    def model_at(thr: float) -> ELoFTR:
        model = ELoFTR(with_coarse_threshold(conf["model"], thr))
        load_weights(model, weights)
        return model

    return validate_at_thresholds(model_at, validation_pairs(conf), coarse_thresholds, None)


def validate_at_thresholds(
    model_at: Callable[[float], ELoFTR], pairs: list[dict], coarse_thresholds: list[float], step: int | None
) -> list[dict[str, float]]:
    """`validate` of the network `model_at(thr)` for each coarse threshold, one row each."""
    rows = []
    for thr in coarse_thresholds:
        rows.append({"step": step, "thr": thr, **validate(model_at(thr), pairs, torch.device("cpu"))})
        logger.info("%s", rows[-1])
    return rows


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default="lite_mix", choices=sorted(confs))
    parser.add_argument("--output", type=Path, help="run folder (required except with --validate --weights)")
    parser.add_argument("--mode", choices=["off", "bias", "rescale", "both"], help="reweighting mode (default: the model's)")
    parser.add_argument("--steps", type=int, help="total steps of the schedule")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps in this run (the schedule stays)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--photos", type=Path, help="folder of training photos")
    parser.add_argument("--data-seed", type=int,
                        help="seed of the training pairs (default: the conf's); a new one per stage of a chain shows new pairs")
    parser.add_argument("--init-from", type=Path, help="checkpoint to start from (ours or official EfficientLoFTR)")
    parser.add_argument("--init-plain", action="store_true",
                        help="start from --init-from's network without its reweighting (gates and calibration at identity)")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing last.pt (kept as last.pt.bak)")
    parser.add_argument("--workers", type=int, help="processes preparing batches (default: by core count)")
    parser.add_argument("--validate", type=float, nargs="+", metavar="THR",
                        help="only validate OUTPUT/last.pt's averaged weights (or --weights) at these coarse thresholds")
    parser.add_argument("--weights", type=Path, help="with --validate: this checkpoint on --conf's validation pairs")
    parser.add_argument("--export", type=Path, metavar="PATH", help="only write OUTPUT/last.pt's weights (fp16) to PATH")
    args = parser.parse_args(argv)
    if args.output is None and not (args.validate and args.weights):
        parser.error("--output is required")
    return args


def with_reweight_mode(conf: dict, mode: str) -> dict:
    """A copy of the training configuration whose model uses reweighting `mode` (off, bias, rescale, both)."""
    return merge(conf, {"model": {"reweight": {"mode": mode}}}, "training configuration")


def conf_from_args(args: argparse.Namespace) -> dict:
    """The named training configuration with the command line's overrides (a copy)."""
    data = {"folder": None if args.photos is None else str(args.photos), "seed": args.data_seed}
    update = {"steps": args.steps, "batch_size": args.batch_size, "data": {k: v for k, v in data.items() if v is not None}}
    if args.mode:
        update["model"] = {"reweight": {"mode": args.mode}}
    return merge(confs[args.conf], {k: v for k, v in update.items() if v is not None}, f"training configuration {args.conf!r}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args()
    if args.validate:
        if args.weights:
            validate_checkpoint(args.weights, conf_from_args(args), args.validate)
        else:
            validate_state(args.output / "last.pt", args.validate)
        raise SystemExit
    if args.export:
        logger.info("wrote %s", export(args.output / "last.pt", args.export))
        raise SystemExit
    try:
        main(conf_from_args(args), args.output, args.init_from, args.init_plain, args.fresh, args.max_steps, args.workers)
    except (KeyboardInterrupt, Interrupted):
        raise SystemExit(f"interrupted; {args.output / 'last.pt'} saved: the same command resumes") from None
