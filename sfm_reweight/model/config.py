"""Named configurations of the matcher network.

`full` has EfficientLoFTR's widths and depths (so that the official checkpoint loads);
`lite` is the CPU-sized network the project trains and ships. Both run through the same code.
"""

import copy
from typing import Any

REWEIGHT_MODES = ("off", "bias", "rescale", "both")
MATCHABILITY_KINDS = ("dual_softmax", "max_cosine")

confs: dict[str, dict[str, Any]] = {
    "full": {
        # layer0 (stem, stride 2) -> layer1 (1/2) -> layer2 (1/4) -> layer3 (1/8)
        "backbone": {"block_dims": [64, 128, 256], "num_blocks": [2, 4, 14]},
        "coarse": {
            "nhead": 8,
            "layer_names": ["self", "cross"] * 4,
            "agg_size": 4,  # queries: stride-4 depthwise conv; keys/values: 4x4 max-pool
            "attention": "sdpa",  # or "einsum" (the official `no_flash=True` path)
            "npe": [832, 832, 832, 832],  # RoPE positions scaled by train/test resolution
        },
        "reweight": {
            "mode": "both",  # off | bias | rescale | both
            "map": "dual_softmax",  # dual_softmax | max_cosine
            "temperature": 0.1,  # of the dual softmax on cosine similarities
        },
        "match_coarse": {
            "thr": 0.2,
            "border_rm": 2,
            "temperature": 0.1,
            # training: fine-stage candidates = this share of the cells, padded with ground truth
            "train_coarse_percent": 0.3,
            "train_pad_num_gt_min": 200,
        },
        # official_block: the sub-pixel block one pixel up-left of the match, as the official
        # checkpoints were trained (set when one is loaded); fine_matching.py says why ours is centred
        "match_fine": {"window": 8, "slicedim": 8, "temperature": 10.0, "official_block": False},
        # Cell-pair similarity matrices are swept in row chunks of this many entries (cache-sized).
        "chunk_elements": 2**19,
    },
}


def merge_conf(base: dict, update: dict) -> dict:
    """Recursively overlay `update` on a copy of `base`; unknown keys are an error."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in out:
            raise KeyError(f"unknown configuration key {key!r}; expected one of {sorted(out)}")
        if isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = merge_conf(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


confs["lite"] = merge_conf(
    confs["full"],
    {
        "backbone": {"block_dims": [32, 64, 128], "num_blocks": [2, 3, 6]},
        "coarse": {"nhead": 4, "layer_names": ["self", "cross"] * 2},
    },
)


def resolve_conf(conf: str | dict, **overrides: Any) -> dict:
    """A full model configuration from a name (`full`, `lite`) or a dict.

    A dict may name its base with `"name"`; it is overlaid on that base (default `full`).
    Keyword overrides address the `reweight` section, e.g. `resolve_conf("lite", mode="off")`.
    """
    if isinstance(conf, str):
        conf = {"name": conf}
    conf = dict(conf)
    name = conf.pop("name", "full")
    if name not in confs:
        raise KeyError(f"unknown model configuration {name!r}; expected one of {sorted(confs)}")
    out = merge_conf(confs[name], conf)
    out = merge_conf(out, {"reweight": overrides}) if overrides else out
    out["name"] = name
    if out["reweight"]["mode"] not in REWEIGHT_MODES:
        raise ValueError(f"reweight.mode must be one of {REWEIGHT_MODES}, got {out['reweight']['mode']!r}")
    if out["reweight"]["map"] not in MATCHABILITY_KINDS:
        raise ValueError(f"reweight.map must be one of {MATCHABILITY_KINDS}, got {out['reweight']['map']!r}")
    if out["coarse"]["attention"] not in ("sdpa", "einsum"):
        raise ValueError(f"coarse.attention must be 'sdpa' or 'einsum', got {out['coarse']['attention']!r}")
    return out
