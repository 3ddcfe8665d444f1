"""Named configurations of the matcher network.

`full` has EfficientLoFTR's widths and depths (so that the official checkpoint loads);
`lite` is a CPU-sized network trained from scratch; `xfeat` puts the same transformer, matching
and refinement on XFeat's pretrained backbone (model/xfeat.py). All run through the same code.
"""

from typing import Any

from ..utils.conf import ConfError, merge, resolve

REWEIGHT_MODES = ("off", "bias", "rescale", "both")
MATCHABILITY_KINDS = ("dual_softmax", "max_cosine")
MATCHABILITY_PRIORS = ("none", "reliability")
BACKBONES = ("repvgg", "xfeat")
REFINEMENTS = ("two_stage", "xfeat")

confs: dict[str, dict[str, Any]] = {
    "full": {
        # layer0 (stem, stride 2) -> layer1 (1/2) -> layer2 (1/4) -> layer3 (1/8)
        # type repvgg: block_dims are the widths at 1/2, 1/4, 1/8 (the last is the transformer's);
        # trainable False freezes the backbone (weights and BatchNorm statistics) in training
        "backbone": {"type": "repvgg", "block_dims": [64, 128, 256], "num_blocks": [2, 4, 14], "trainable": True},
        "coarse": {
            "d_model": 256,  # transformer width (a pretrained backbone's descriptors are projected to it)
            # neutral_init: every layer's output norm starts at 0, so each layer is the identity and
            # the coarse matches start as those of the backbone's descriptors alone
            "neutral_init": False,
            # a pretrained backbone's projection starts so that the coarse dual softmax is that of
            # its descriptors' cosines at this temperature (sharper than match_coarse.temperature's
            # 0.1: XFeat's cosines of right and wrong partners lie close together)
            "descriptor_temperature": 0.02,
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
            # reliability: the map times the backbone's own reliability map (XFeat's heatmap head)
            "prior": "none",
        },
        "match_coarse": {
            "thr": 0.2,
            "border_rm": 2,
            "temperature": 0.1,
            # inference: only the top_k cells of each image by the backbone's reliability (XFeat's
            # heatmap head) enter the matchability maps and the coarse matching (model/top_k.py); a
            # number of cells, or below 1 a share of the grid's cells; None: every cell. Training
            # always uses every cell (the losses need P at any pair).
            "top_k": None,
            # training: fine-stage candidates = this share of the cells, padded with ground truth
            "train_coarse_percent": 0.3,
            "train_pad_num_gt_min": 200,
        },
        # official_block: the sub-pixel block one pixel up-left of the match, as the official
        # checkpoints were trained (set when one is loaded); fine_matching.py says why ours is centred
        # fpn_dims: widths of the fine FPN at 1/2, 1/4, 1/8 (the fine map has the first); None: the
        # RepVGG backbone's block_dims, as in EfficientLoFTR; local_fpn: at inference the FPN's 1/2-res
        # stage runs only around the matched windows (same windows, fine_preprocess.py); refinement:
        # EfficientLoFTR's "two_stage", or "xfeat": XFeat*'s pretrained offset MLP, inference only
        # (the untrained start of the `xfeat` network; xfeat_refinement.py)
        "match_fine": {
            "window": 8,
            "slicedim": 8,
            "temperature": 10.0,
            "official_block": False,
            "fpn_dims": None,
            "local_fpn": False,
            "refinement": "two_stage",
        },
        # Cell-pair similarity matrices are swept in row chunks of this many entries (cache-sized).
        "chunk_elements": 2**19,
    },
}


confs["lite"] = merge(
    confs["full"],
    {
        "backbone": {"block_dims": [32, 64, 128], "num_blocks": [2, 3, 6]},
        "coarse": {"d_model": 128, "nhead": 4, "layer_names": ["self", "cross"] * 2},
    },
)
# XFeat's 64-d descriptors (frozen) into lite's transformer at width 64; a small trainable FPN on
# XFeat's 1/2 and 1/4 maps for the fine stage; the reliability map available as a matchability prior.
# Inference matches the most reliable third of each image's cells, for speed, with the FPN's last
# stage only around the matched windows (docs/xfeat.md measures the trade-off against every cell)
confs["xfeat"] = merge(
    confs["lite"],
    {
        "backbone": {"type": "xfeat", "trainable": False},
        "coarse": {"d_model": 64, "neutral_init": True},
        "match_coarse": {"top_k": 0.33},
        "match_fine": {"fpn_dims": [24, 24, 32], "local_fpn": True},
    },
)


def resolve_model_conf(conf: str | dict, **overrides: Any) -> dict:
    """A full model configuration from a name (`full`, `lite`, `xfeat`) or a dict overlaid on the
    one it names with "name" (default `full`); `ConfError` for an unknown name, key or value.
    Keyword overrides address the `reweight` section, e.g. `resolve_model_conf("lite", mode="off")`.
    """
    out = resolve(confs, conf, "full", "model configuration")
    out = merge(out, {"reweight": overrides}, "reweight") if overrides else out
    if out["reweight"]["mode"] not in REWEIGHT_MODES:
        raise ConfError(f"reweight.mode must be one of {REWEIGHT_MODES}, got {out['reweight']['mode']!r}")
    if out["reweight"]["map"] not in MATCHABILITY_KINDS:
        raise ConfError(f"reweight.map must be one of {MATCHABILITY_KINDS}, got {out['reweight']['map']!r}")
    if out["reweight"]["prior"] not in MATCHABILITY_PRIORS:
        raise ConfError(f"reweight.prior must be one of {MATCHABILITY_PRIORS}, got {out['reweight']['prior']!r}")
    if out["backbone"]["type"] not in BACKBONES:
        raise ConfError(f"backbone.type must be one of {BACKBONES}, got {out['backbone']['type']!r}")
    backbone = out["backbone"]
    if backbone["type"] == "repvgg" and backbone["block_dims"][2] != out["coarse"]["d_model"]:
        raise ConfError(
            f"coarse.d_model {out['coarse']['d_model']} must equal the RepVGG backbone's last width"
            f" {backbone['block_dims'][2]}"
        )
    if backbone["type"] == "xfeat" and (out["coarse"]["d_model"] < 64 or out["match_fine"]["fpn_dims"] is None):
        raise ConfError(
            "backbone.type 'xfeat' needs coarse.d_model >= 64 (its descriptors' width, which the projection starts by"
            f" copying; got {out['coarse']['d_model']}) and explicit match_fine.fpn_dims"
            f" (got {out['match_fine']['fpn_dims']})"
        )
    if out["reweight"]["prior"] == "reliability" and out["backbone"]["type"] != "xfeat":
        raise ConfError("reweight.prior 'reliability' needs a backbone with a reliability map (backbone.type 'xfeat')")
    top_k = out["match_coarse"]["top_k"]
    count, share = type(top_k) is int and top_k >= 1, type(top_k) is float and 0 < top_k < 1
    if top_k is not None and not (count or share):
        raise ConfError(
            f"match_coarse.top_k must be None, a number of cells (int) or a share of them in (0, 1), got {top_k!r}"
        )
    if top_k is not None and out["backbone"]["type"] != "xfeat":
        raise ConfError(
            "match_coarse.top_k ranks cells by reliability: it needs a backbone with one (backbone.type 'xfeat')"
        )
    refinement = out["match_fine"]["refinement"]
    if refinement not in REFINEMENTS:
        raise ConfError(f"match_fine.refinement must be one of {REFINEMENTS}, got {refinement!r}")
    if refinement == "xfeat" and out["backbone"]["type"] != "xfeat":
        raise ConfError(
            "match_fine.refinement 'xfeat' refines from XFeat's descriptors: it needs backbone.type 'xfeat'"
        )
    if out["coarse"]["attention"] not in ("sdpa", "einsum"):
        raise ConfError(f"coarse.attention must be 'sdpa' or 'einsum', got {out['coarse']['attention']!r}")
    return out
