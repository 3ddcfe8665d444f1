"""Training recipes: the named training configurations (`confs`), chained stage by stage with
--init_from, each a resolved model configuration, the data mix, the schedule, the loss weights and
the validation settings; `python -m sfm_reweight.train.trainer --conf NAME` runs one."""

import dataclasses
import os
from pathlib import Path

from ..matcher import confs as matcher_confs
from ..model.config import resolve_model_conf
from ..utils.conf import merge
from .homography_pairs import HomographyPairConf
from .synthetic_pairs import RepeatedFacadePairConf, SyntheticPairConf

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SFM_REWEIGHT_DATA", REPO.parent / "shared" / "data"))
DEFAULT_PHOTOS = DATA / "train_pool"


def pair_options(dataclass_type) -> dict:
    """The defaults of a synthetic pair kind's conf, but the fields the data section sets for all kinds."""
    return {f.name: f.default for f in dataclasses.fields(dataclass_type) if f.name not in ("size", "seed")}


confs = {
    "lite_homography": {
        "model": resolve_model_conf("lite"),  # a model configuration (model/config.py), resolved
        # weights the run starts from (a path, a shipped name, or "xfeat"); --init_from overrides
        "init_from": None,
        # mix: the share of steps of each kind of pairs (0: not used); homography / synthetic / repeated:
        # the fields of HomographyPairConf / SyntheticPairConf / RepeatedFacadePairConf but size and
        # seed; megadepth, scannet: data_mix.py
        "data": {
            "folder": str(DEFAULT_PHOTOS),
            "size": [320, 256],
            "seed": 0,
            "mix": {"homography": 1.0, "synthetic": 0.0, "repeated": 0.0, "megadepth": 0.0, "scannet": 0.0},
            "homography": pair_options(HomographyPairConf),
            "synthetic": pair_options(SyntheticPairConf),
            "repeated": pair_options(RepeatedFacadePairConf),
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
        # a trainable backbone's rate (None: lr): a pretrained one is fine-tuned well below the rest
        "backbone_lr": None,
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
# The lite chain, each stage started with --init_from the previous one's weights; what each
# stage measured: docs/training_lite.md.
# Homography pairs (planar, any rotation and zoom) and rendered 3D scenes (parallax, occlusion).
confs["lite_mix"] = merge(confs["lite_homography"], {"data": {"mix": {"homography": 0.5, "synthetic": 0.5}}})
# A lower learning rate on mostly upright pairs (relative rotation up to 45 deg, a tenth of them any
# angle; the Matcher's rotation search covers right angles), and views down to about the photos' own
# resolution, for the close-up texture a 1024-px input shows.
confs["lite_mix_upright"] = merge(
    confs["lite_mix"],
    {
        "steps": 2000,
        "lr": 3e-4,
        "warmup_steps": 50,
        "data": {
            "seed": 1,
            "homography": {"full_rotation_prob": 0.1, "max_rotation": 45.0, "coverage": (0.15, 0.8), "min_scale": 0.75},
        },
    },
)
# Views of 640x480 (4800 coarse cells instead of 1280), closer to the 10^4 cells of a 1024-px
# input; one pair per step keeps a CPU step ~3 s.
confs["lite_mix_large"] = merge(confs["lite_mix_upright"], {"batch_size": 1, "data": {"size": [640, 480], "seed": 2}})
# The same views on a longer schedule, meant to be resumed over several runs.
confs["lite_mix_large_long"] = merge(confs["lite_mix_large"], {"steps": 8000, "data": {"seed": 3}})
# lite_mix_large_long plus the loss on cells without a correspondent (losses.coarse_negative_loss),
# over 2200 steps of new pairs. Weight 5: per cell, -log(1 - P) pulls a logit by ~2P (~0.06 at the
# P ~ 0.03 such cells reach) against ~0.5 for a positive's focal term, so at weight 1 the term would
# be nearly an order of magnitude weaker.
confs["lite_mix_large_negatives"] = merge(
    confs["lite_mix_large_long"], {"steps": 2200, "loss_weights": {"coarse_negative": 5.0}, "data": {"seed": 5}}
)
# XFeat's pretrained backbone, frozen, under the lite transformer at its width (model conf "xfeat"):
# the transformer starts as the identity and the coarse matches as XFeat's, so the run trains the
# projection, transformer, reweighting and fine stage on top of descriptors learned on real
# multi-view data; lite_mix_large's views and pairs, real Oxford pairs validated in the loop
# (docs/xfeat.md).
confs["xfeat_mix"] = merge(
    confs["lite_mix_large"],
    {
        "model": resolve_model_conf("xfeat"),
        "init_from": "xfeat",
        "steps": 3000,
        "lr": 1e-3,
        "warmup_steps": 100,
        "val_every": 250,
        "val_oxford": str(DATA / "oxford_affine"),
        "data": {"seed": 6},
    },
)
# xfeat_mix's shipped weights fine-tuned with three fifths of the steps on facades of identical bays
# (synthetic_pairs.RepeatedFacadePairs), where a match one bay off looks as good as the right one
# and only the context tells them apart: the courtyard's failure. Measured, not shipped (docs/xfeat.md).
confs["xfeat_repeated"] = merge(
    confs["xfeat_mix"],
    {
        "init_from": "xfeat-eloftr",
        "steps": 4000,
        "lr": 6e-4,
        "warmup_steps": 100,
        "data": {"seed": 8, "mix": {"homography": 0.2, "synthetic": 0.2, "repeated": 0.6}},
    },
)
# xfeat_mix's shipped weights trained on with XFeat's backbone unfrozen at a tenth of the rate of
# the rest (its BatchNorm statistics follow the training views too). Stopped early, not shipped (docs/xfeat.md).
confs["xfeat_unfrozen"] = merge(
    confs["xfeat_mix"],
    {
        "model": {"backbone": {"trainable": True}},
        "init_from": "xfeat-eloftr",
        "steps": 1500,
        "lr": 3e-4,
        "backbone_lr": 3e-5,
        "warmup_steps": 50,
        "data": {"seed": 9},
    },
)
# xfeat_mix's shipped weights trained on wider baselines: homographies with stronger perspective,
# rendered cameras up to 80 deg apart, and three views in ten lit as at night (homography_pairs.night)
# for day-night pairs. Measured, not shipped (docs/xfeat.md).
confs["xfeat_wide"] = merge(
    confs["xfeat_mix"],
    {
        "init_from": "xfeat-eloftr",
        "steps": 3000,
        "lr": 6e-4,
        "warmup_steps": 100,
        "data": {
            "seed": 10,
            "homography": {"max_perspective": 0.6, "night_prob": 0.3},
            "synthetic": {"max_azimuth_change": 1.4, "night_prob": 0.3},
        },
    },
)
# lite_mix_large_long on a GPU (scripts/device_training.sh), --init_from the shipped lite weights:
# 16 pairs per step, the learning rate ~sqrt-scaled from one pair's 3e-4 but kept below the full
# 1.2e-3 (a fine-tuning), no bitwise determinism (CUDA's deterministic scatter is slow). The device
# script sets --steps to what its time limit allows at the measured speed, so that the schedule
# decays to its end within the run.
confs["lite_mix_large_gpu"] = merge(
    confs["lite_mix_large_long"],
    {"steps": 1500, "batch_size": 16, "lr": 8e-4, "warmup_steps": 100, "deterministic": False, "data": {"seed": 4}},
)


def with_reweight_mode(conf: dict, mode: str) -> dict:
    """A copy of the training configuration whose model uses reweighting `mode` (off, bias, rescale, both)."""
    return merge(conf, {"model": {"reweight": {"mode": mode}}}, "training configuration")
