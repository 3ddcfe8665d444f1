"""Matchability maps and the chunked dual softmax they share with coarse matching."""

import pytest
import torch
import torch.nn.functional as F

from helpers.calibration import calibrate_batchnorm, textured_image
from sfm_reweight.model.dual_softmax import DualSoftmax
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.matchability import MatchabilityCalibration, matchability_maps


def dense_dual_softmax(f0, f1, scale, mask0=None, mask1=None):
    x = scale * f0 @ f1.transpose(1, 2)
    if mask0 is not None:
        x = x.masked_fill(~(mask0[:, :, None] & mask1[:, None]), -float("inf"))
    return (x.softmax(1).nan_to_num(0)) * (x.softmax(2).nan_to_num(0))


@pytest.fixture
def features():
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(2, 70, 16, generator=g), torch.randn(2, 50, 16, generator=g)
    mask0 = torch.ones(2, 70, dtype=torch.bool)
    mask1 = torch.ones(2, 50, dtype=torch.bool)
    mask0[1, 60:], mask1[1, 45:] = False, False
    return f0, f1, mask0, mask1


@pytest.mark.parametrize("chunk_elements", [7, 64, 10**6])
@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: logits of several hundred, as in random networks
def test_dual_softmax_matches_dense(features, chunk_elements, scale):
    f0, f1, mask0, mask1 = features
    dense = dense_dual_softmax(f0, f1, scale, mask0, mask1)
    ds = DualSoftmax(f0, f1, scale, mask0, mask1, chunk_elements)
    # Pairs of two padded cells get a uniform P (as with the official -1e9 fill); they are never used.
    either = mask0[:, :, None] | mask1[:, None]
    assert torch.allclose(ds.matrix()[either], dense[either], rtol=1e-4, atol=1e-6)
    row_max, row_arg, col_max, col_arg = ds.maxima()
    assert torch.allclose(row_max[mask0], dense.amax(2)[mask0], rtol=1e-4, atol=1e-6)
    assert torch.allclose(col_max[mask1], dense.amax(1)[mask1], rtol=1e-4, atol=1e-6)
    top = dense.topk(2, dim=2).values  # compare arguments where the maximum is not a near-tie
    clear0 = mask0 & (top[..., 0] > 1.001 * top[..., 1])
    assert clear0.sum() > 50
    assert torch.equal(row_arg[clear0], dense.argmax(2)[clear0])
    top = dense.topk(2, dim=1).values
    clear1 = mask1 & (top[:, 0] > 1.001 * top[:, 1])
    assert torch.equal(col_arg[clear1], dense.argmax(1)[clear1])
    b, i = torch.where(mask0)
    j = row_arg[b, i]
    assert torch.allclose(ds.at(b, i, j), dense[b, i, j], rtol=1e-4, atol=1e-6)


def test_dual_softmax_is_differentiable(features):
    f0, f1, mask0, mask1 = features
    f0 = f0.clone().requires_grad_()
    row_max, _, col_max, _ = DualSoftmax(f0, f1, 2.0, mask0, mask1, chunk_elements=64).maxima()
    (row_max.sum() + col_max.sum()).backward()
    assert f0.grad is not None and torch.isfinite(f0.grad).all() and f0.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["dual_softmax", "max_cosine"])
def test_maps_in_unit_range_and_zero_on_padding(kind):
    g = torch.Generator().manual_seed(1)
    feat0, feat1 = torch.relu(torch.randn(1, 32, 6, 8, generator=g)), torch.relu(torch.randn(1, 32, 4, 8, generator=g))
    mask0 = torch.zeros(1, 6, 8, dtype=torch.bool)
    mask0[:, :5, :6] = True
    mask1 = torch.ones(1, 4, 8, dtype=torch.bool)
    m0, m1 = matchability_maps(feat0, feat1, kind, mask0=mask0, mask1=mask1, chunk_elements=16)
    assert m0.shape == (1, 6, 8) and m1.shape == (1, 4, 8)
    for m in (m0, m1):
        assert m.min() >= 0 and m.max() <= 1
    assert (m0[~mask0] == 0).all()
    if kind == "max_cosine":
        f0 = F.normalize(feat0.flatten(2), dim=1)
        f1 = F.normalize(feat1.flatten(2), dim=1)
        cos = (f0.transpose(1, 2) @ f1)[0]
        assert torch.allclose(m1[0].flatten(), cos[mask0[0].flatten()].amax(0).clamp(0, 1), rtol=1e-4, atol=1e-6)


def test_calibration_starts_as_identity_and_passes_gradients():
    m = torch.tensor([[[1e-3, 0.2], [0.5, 0.99]]], requires_grad=True)
    mask = torch.tensor([[[True, True], [True, False]]])
    calibration = MatchabilityCalibration()
    p = calibration(m, mask)
    assert torch.allclose(p[mask], m[mask], rtol=1e-5) and p[~mask].item() == 0
    with torch.no_grad():
        calibration.offset.fill_(3.0)  # a positive offset raises every cell, keeping their order
    p = calibration(m)
    assert (p > m).all() and (p.flatten().argsort() == m.flatten().argsort()).all()
    p.sum().backward()
    assert (m.grad > 0).all() and calibration.scale.grad is not None


def test_shared_region_is_more_matchable():
    """Left half of both images shows the same texture, the right halves differ: the network's
    map must rate the shared half higher (a random network with calibrated BatchNorm suffices:
    the map compares backbone features, which for identical content are identical)."""
    h, w = 192, 256
    shared = textured_image(h, w // 2, seed=1)
    image0 = torch.from_numpy(textured_image(h, w, seed=2))
    image1 = torch.from_numpy(textured_image(h, w, seed=3))
    image0[:, : w // 2] = torch.from_numpy(shared)
    image1[:, : w // 2] = torch.from_numpy(shared)
    image0, image1 = image0[None, None], image1[None, None]
    model = ELoFTR("lite")
    calibrate_batchnorm(model, torch.cat([image0, image1]))
    with torch.no_grad():
        out = model(image0, image1)
    m0 = out["matchability0"][0]
    # keep 2 cells (a RepVGG receptive field) away from the seam
    shared_score, unique_score = m0[:, : w // 16 - 2].mean(), m0[:, w // 16 + 2 :].mean()
    assert out["matchability0"].min() >= 0 and out["matchability0"].max() <= 1
    assert shared_score > 2 * unique_score, (shared_score, unique_score)
