"""Reweighting off, our `full` network reproduces the official EfficientLoFTR code with the same weights."""

import pytest
import torch

from helpers.calibration import calibrate_batchnorm, textured_image
from helpers.official import official_forward, official_model
from sfm_reweight.model.eloftr import ELoFTR

THR = 0.1  # the official evaluation threshold; the calibrated random network keeps hundreds of matches


def build_pair(attention: str, calibration: torch.Tensor | None = None) -> tuple[torch.nn.Module, ELoFTR]:
    conf = {
        "name": "full",
        "reweight": {"mode": "off"},
        "match_coarse": {"thr": THR},
        "coarse": {"attention": attention},
        "match_fine": {"official_block": True},  # what loading an official checkpoint selects
    }
    ours = ELoFTR(conf).eval()
    try:
        reference = official_model(ours.conf)
    except ImportError as err:
        pytest.skip(str(err))
    torch.manual_seed(0)
    ours.load_state_dict(reference.state_dict(), strict=True)
    if calibration is None:
        calibration = torch.from_numpy(textured_image(320, 320))[None, None]
    calibrate_batchnorm(ours, calibration)
    reference.load_state_dict(ours.state_dict(), strict=True)
    return reference, ours


@pytest.fixture(scope="module")
def sdpa_pair():
    return build_pair("sdpa")


def compare(reference, ours, image0, image1, mask0=None, mask1=None) -> int:
    with torch.no_grad():
        ref = official_forward(reference, image0, image1, mask0, mask1)
        out = ours(image0, image1, mask0, mask1)
    conf = out["coarse_dual_softmax"].matrix()
    assert (conf - ref["conf_matrix"]).abs().max().item() <= 1e-4
    b, i, j = out["coarse_ids"]
    assert torch.equal(b, ref["b_ids"]) and torch.equal(i, ref["i_ids"]) and torch.equal(j, ref["j_ids"])
    assert torch.allclose(out["confidence"], ref["mconf"], atol=1e-4, rtol=0)
    assert (out["keypoints0"] - ref["mkpts0_f"]).abs().max().item() <= 1e-3
    assert (out["keypoints1"] - ref["mkpts1_f"]).abs().max().item() <= 1e-3
    return len(b)


def shifted_pair(h0, w0, h1, w1, dy=8, dx=16):
    texture = torch.from_numpy(textured_image(max(h0, h1) + dy, max(w0, w1) + dx))[None, None]
    return texture[..., :h0, :w0].clone(), texture[..., dy : dy + h1, dx : dx + w1].clone()


@pytest.mark.parametrize(
    "h0, w0, h1, w1",
    [(256, 256, 256, 256), (224, 320, 224, 320), (256, 320, 192, 288)],
    ids=["square", "non-square", "different-sizes"],
)
def test_parity_with_official(sdpa_pair, h0, w0, h1, w1):
    reference, ours = sdpa_pair
    assert compare(reference, ours, *shifted_pair(h0, w0, h1, w1)) > 100


def test_parity_einsum_attention():
    assert compare(*build_pair("einsum"), *shifted_pair(224, 288, 224, 288)) > 100


def test_parity_with_padding_masks():
    """Zero-padded images with coarse masks (the official batch-size-1 path crops to the valid region;
    it supports padding along one axis per image, as in its square-padded MegaDepth evaluation).

    RepVGG's receptive field spans the whole image, so the random network is calibrated on the
    padded images themselves, as a network trained with padding would be.
    """
    image0, image1 = shifted_pair(192, 320, 256, 256)
    padded = torch.zeros(2, 1, 256, 320)
    padded[0, :, :192, :], padded[1, :, :, :256] = image0[0], image1[0]
    mask0 = torch.zeros(1, 32, 40, dtype=torch.bool)
    mask1 = mask0.clone()
    mask0[:, :24, :] = True
    mask1[:, :, :32] = True
    reference, ours = build_pair("sdpa", calibration=padded)
    assert compare(reference, ours, padded[:1], padded[1:], mask0, mask1) > 20
