"""Training loop: resumable, NaN-guarded, logged; `python -m sfm_reweight.train.trainer --help`.

    python -m sfm_reweight.train.trainer --conf lite_mix --output outputs/train/lite
    # interrupted? the same command resumes from outputs/train/lite/last.pt (step, optimizer,
    # scheduler and data position); --fresh starts over (the old run is kept as last.pt.bak).

Every `checkpoint_every` steps, and on Ctrl-C / SIGTERM, `last.pt` is written atomically. The data
at step s are the dataset items s*batch .. s*batch+batch-1, each deterministic, so a resumed run
sees exactly what an uninterrupted one would. Logs: `log.csv` (one row per step) and `loss.png`;
`val.csv` with the homography AUC on a fixed set of synthetic pairs.

Here: the loop, the loss terms of a batch, the learning-rate schedule, the export and the command
line. The named configurations are in recipes.py, validation in validation.py, the moving average
of the weights in moving_average.py, the CSV logs and the loss plot in logs.py.
"""

import argparse
import copy
import functools
import logging
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import cli
from ..model.config import resolve_model_conf
from ..model.eloftr import COARSE_STRIDE, ELoFTR
from ..model.weights import load_weights, read_checkpoint, save_checkpoint
from ..utils import atomic
from ..utils.conf import ConfError, merge
from .data_mix import StepBatches, as_is, build_sources, collate
from .logs import append_csv, plot_losses
from .losses import coarse_loss, coarse_negative_loss, fine_loss, matchability_loss, subpixel_loss
from .moving_average import averaged_model, exponential_average
from .real_validation import oxford_validation_pairs
from .recipes import confs
from .supervision import coarse_supervision, fine_supervision
from .validation import at_coarse_threshold, validate, validate_checkpoint, validate_state, validation_pairs
from .warps import warp_from_batch

logger = logging.getLogger(__name__)

MAX_BAD_STEPS = 20  # consecutive non-finite losses before giving up


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


class Interrupted(Exception):
    pass


def parameter_groups(model: ELoFTR, conf: dict) -> list[dict]:
    """The network at `lr` with weight decay, a trainable backbone at `backbone_lr` (None: `lr`); the
    reweighting scalars (gates, map calibration) at their own rates and without decay toward 0."""
    reweighting = set(model.reweighting_parameter_names())
    calibration = set(model.calibration_parameter_names())
    gates = reweighting - calibration
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # a frozen backbone is not optimised
    in_backbone = {n for n, _ in named if n.startswith("backbone.")}
    return [
        {
            "params": [p for n, p in named if n not in reweighting and n not in in_backbone],
            "lr": conf["lr"],
            "weight_decay": conf["weight_decay"],
        },
        {
            "params": [p for n, p in named if n in in_backbone],
            "lr": conf["lr"] if conf["backbone_lr"] is None else conf["backbone_lr"],
            "weight_decay": conf["weight_decay"],
        },
        {"params": [p for n, p in named if n in gates], "lr": conf["gate_lr"], "weight_decay": 0.0},
        {"params": [p for n, p in named if n in calibration], "lr": conf["calibration_lr"], "weight_decay": 0.0},
    ]


# where the data lives, not what it is: a run resumes after its data folders moved
LOCATIONS = (("val_oxford",), ("data", "folder"), ("data", "megadepth", "root"), ("data", "scannet", "root"))


def without_locations(conf: dict) -> dict:
    """A training conf with the LOCATIONS blanked, for comparing a stored run's conf with this one."""
    conf = copy.deepcopy(conf)
    for *parents, key in LOCATIONS:
        section = functools.reduce(lambda d, k: d.get(k, {}), parents, conf)
        if key in section:
            section[key] = None
    return conf


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
    if resolve_model_conf(conf["model"])["match_fine"]["refinement"] == "xfeat":
        raise ConfError(
            "match_fine.refinement 'xfeat' is XFeat*'s pretrained MLP, for inference only: train with 'two_stage'"
        )
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
        state = read_checkpoint(last)
        if without_locations(state["conf"]) != without_locations(conf):
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
        model.conf["match_fine"]["official_block"] = resolve_model_conf(conf["model"])["match_fine"]["official_block"]
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
            {
                "conf": conf,
                "step": step,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
            },
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
    batches = iter(
        DataLoader(
            StepBatches(sources, data_conf, conf["batch_size"], step, end),
            batch_size=None,
            num_workers=workers,
            collate_fn=as_is,
            prefetch_factor=4 if workers else None,
            generator=torch.Generator(),  # its seed draw must not consume the global RNG the model samples from
        )
    )
    try:
        while step < end:
            start = time.time()
            batch = collate(next(batches), device)
            terms = training_losses(model, batch, conf["loss_weights"], amp)
            if not torch.isfinite(terms["total"]):
                bad_steps += 1
                logger.warning(
                    "step %d: non-finite loss %s, batch skipped", step, {k: float(v) for k, v in terms.items()}
                )
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
            row = {
                "step": step,
                **{k: round(v.item(), 5) for k, v in terms.items()},
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(time.time() - start, 3),
            }
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


def export(last: Path, path: Path) -> Path:
    """Write the moving-average weights of a training state (`last.pt`, possibly of a run still
    going) as an fp16 checkpoint in our format."""
    state = read_checkpoint(last)
    return save_checkpoint(averaged_model(state), path, half=True, step=state["step"])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__, confs, "lite_mix")
    parser.add_argument("--output", type=Path, help="run folder (required except with --validate --weights)")
    parser.add_argument(
        "--mode", choices=["off", "bias", "rescale", "both"], help="reweighting mode (default: the model's)"
    )
    parser.add_argument("--steps", type=int, help="total steps of the schedule")
    parser.add_argument("--max_steps", type=int, help="stop after this many steps in this run (the schedule stays)")
    parser.add_argument("--batch_size", type=int)
    parser.add_argument("--photos", type=Path, help="folder of training photos")
    parser.add_argument(
        "--data_seed",
        type=int,
        help="seed of the training pairs (default: the conf's); a new one per stage of a chain shows new pairs",
    )
    parser.add_argument("--init_from", type=Path, help="checkpoint to start from (ours or official EfficientLoFTR)")
    parser.add_argument(
        "--init_plain",
        action="store_true",
        help="start from --init_from's network without its reweighting (gates and calibration at identity)",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore an existing last.pt (kept as last.pt.bak)")
    parser.add_argument("--workers", type=int, help="processes preparing batches (default: by core count)")
    parser.add_argument(
        "--validate",
        type=float,
        nargs="+",
        metavar="THR",
        help="only validate OUTPUT/last.pt's averaged weights (or --weights) at these coarse thresholds",
    )
    parser.add_argument("--weights", type=Path, help="with --validate: this checkpoint on --conf's validation pairs")
    parser.add_argument(
        "--export", type=Path, metavar="PATH", help="only write OUTPUT/last.pt's weights (fp16) to PATH"
    )
    args = parser.parse_args(argv)
    if args.output is None and not (args.validate and args.weights):
        parser.error("--output is required")
    return args


def training_conf(args: argparse.Namespace) -> dict:
    """The named training configuration with --options and the command line's shortcuts (a copy)."""
    data = {"folder": None if args.photos is None else str(args.photos), "seed": args.data_seed}
    update = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "data": {k: v for k, v in data.items() if v is not None},
    }
    if args.mode:
        update["model"] = {"reweight": {"mode": args.mode}}
    update = {k: v for k, v in update.items() if v is not None}
    return merge(
        merge(confs[args.conf], cli.parse_options(args.options)), update, f"training configuration {args.conf!r}"
    )


def command(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.validate:
        if args.weights:
            cli.run(
                validate_checkpoint, weights=args.weights, conf=training_conf(args), coarse_thresholds=args.validate
            )
        else:
            cli.run(validate_state, last=args.output / "last.pt", coarse_thresholds=args.validate)
        return
    if args.export:
        logger.info("wrote %s", cli.run(export, last=args.output / "last.pt", path=args.export))
        return
    try:
        cli.run(
            main,
            conf=training_conf(args),
            output=args.output,
            init_from=args.init_from,
            init_plain=args.init_plain,
            fresh=args.fresh,
            max_steps=args.max_steps,
            workers=args.workers,
        )
    except (KeyboardInterrupt, Interrupted):
        raise SystemExit(f"interrupted; {args.output / 'last.pt'} saved: the same command resumes") from None


if __name__ == "__main__":
    command()
