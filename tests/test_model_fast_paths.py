"""The inference shortcuts of the network: top-k cells (`match_coarse.top_k`), the FPN's last stage
around the windows only (`match_fine.local_fpn`) and the chunked fine refinement. The last two give
the same results as the whole-map, all-at-once computations; top-k computes the exhaustive
matching's rules on a subset of the cells."""

import pytest
import torch

from helpers.calibration import calibrate_batchnorm, textured_image
from sfm_reweight.model.coarse_matching import coarse_dual_softmax, select_coarse_matches
from sfm_reweight.model.config import resolve_model_conf
from sfm_reweight.model.dual_softmax import DualSoftmax
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.fine_matching import refine_matches
from sfm_reweight.model.fine_preprocess import FinePreprocess, crop_windows
from sfm_reweight.model.matchability import matchability_maps
from sfm_reweight.model.top_k import top_cells
from sfm_reweight.utils.conf import ConfError


def random_fpn() -> FinePreprocess:
    """xfeat's FPN widths with BatchNorm statistics and affine parameters away from the identity."""
    torch.manual_seed(0)
    fpn = FinePreprocess([8, 24, 64], [24, 24, 32]).eval()
    for m in fpn.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return fpn


@pytest.mark.parametrize("size", [8, 10])  # image 0's and image 1's windows
@torch.no_grad()
def test_local_fpn_windows_equal_windows_of_the_whole_map(size):
    fpn = random_fpn()
    h, w = 96, 128
    g = torch.Generator().manual_seed(1)
    feat_c = torch.randn(2, 64, h // 8, w // 8, generator=g)
    x2, x1 = torch.randn(2, 24, h // 4, w // 4, generator=g), torch.randn(2, 8, h // 2, w // 2, generator=g)
    cells = (h // 8) * (w // 8)
    b_ids, cell_ids = torch.arange(2).repeat_interleave(cells), torch.arange(cells).repeat(2)  # border cells included
    whole = crop_windows(fpn(feat_c, x2, x1), b_ids, cell_ids, 8, size)
    local = fpn.windows(fpn.half_resolution_input(feat_c, x2, x1), b_ids, cell_ids, 8, size)
    assert local.shape == whole.shape == (2 * cells, size * size, 24)
    torch.testing.assert_close(local, whole, rtol=1e-5, atol=1e-5)


def test_chunked_refinement_equals_all_at_once():
    g = torch.Generator().manual_seed(2)
    m = 37
    feat0, feat1 = torch.randn(m, 64, 24, generator=g), torch.randn(m, 100, 24, generator=g)
    kpts0, kpts1 = torch.rand(m, 2, generator=g) * 100, torch.rand(m, 2, generator=g) * 100
    whole = refine_matches(feat0, feat1, kpts0, kpts1, 8, 10.0, training=True)
    chunked = refine_matches(feat0, feat1, kpts0, kpts1, 8, 10.0, training=False, chunk_elements=5 * 6400)
    assert chunked["conf_matrix_f"] is None and chunked["sim_matrix_ff"] is None
    for key in ("keypoints0", "keypoints1"):
        torch.testing.assert_close(chunked[key], whole[key])
    empty = refine_matches(feat0[:0], feat1[:0], kpts0[:0], kpts1[:0], 8, 10.0)
    assert empty["keypoints0"].shape == (0, 2)


def test_top_cells_rank_by_score_and_put_padding_last():
    score = torch.tensor([[0.9, 0.1, 0.5], [0.8, 0.95, 0.2]]).reshape(1, 1, 2, 3)
    assert top_cells(score, 3).tolist() == [[0, 3, 4]]
    mask = torch.tensor([[[True, True, True], [True, False, False]]])
    assert top_cells(score, 3, mask).tolist() == [[0, 2, 3]]
    assert top_cells(score, 100).tolist() == [list(range(6))]
    assert top_cells(score, 0.4).tolist() == [[0, 3, 4]]  # a share: ceil(0.4 * 6) cells


def test_maps_over_top_cells_are_the_subset_dual_softmax_and_zero_elsewhere():
    g = torch.Generator().manual_seed(3)
    feat0, feat1 = torch.relu(torch.randn(1, 16, 4, 6, generator=g)), torch.relu(torch.randn(1, 16, 5, 4, generator=g))
    cells0, cells1 = torch.tensor([[1, 4, 7, 20]]), torch.tensor([[0, 5, 6, 19, 11]]).sort(1).values
    m0, m1 = matchability_maps(feat0, feat1, chunk_elements=8, cells0=cells0, cells1=cells1)
    f0 = torch.nn.functional.normalize(feat0.flatten(2).transpose(1, 2), dim=-1)[:, cells0[0]]
    f1 = torch.nn.functional.normalize(feat1.flatten(2).transpose(1, 2), dim=-1)[:, cells1[0]]
    row_max, _, col_max, _ = DualSoftmax(f0, f1, 10.0).maxima()
    torch.testing.assert_close(m0.flatten(1)[:, cells0[0]], row_max)
    torch.testing.assert_close(m1.flatten(1)[:, cells1[0]], col_max)
    assert m0.flatten().count_nonzero() <= 4 and m1.flatten().count_nonzero() <= 5


def test_coarse_matches_over_all_cells_as_a_subset_are_the_exhaustive_ones():
    g = torch.Generator().manual_seed(4)
    f0 = torch.randn(1, 48, 8, generator=g)
    f1 = torch.cat([f0[:, torch.randperm(48, generator=g)], torch.randn(1, 12, 8, generator=g)], 1) + 0.05
    every = coarse_dual_softmax(f0, f1, 0.1)
    reference = select_coarse_matches(every, 0.05, 1, (6, 8), (6, 10))
    cells0, cells1 = torch.arange(48)[None], torch.arange(60)[None]
    subset = select_coarse_matches(every, 0.05, 1, (6, 8), (6, 10), cells0=cells0, cells1=cells1)
    assert len(reference[0]) > 10
    assert all(torch.equal(a, b) for a, b in zip(reference, subset))
    # a subset maps its rows and columns back to grid cells
    keep0, keep1 = torch.arange(0, 48, 2)[None], torch.arange(60)[None]
    part = coarse_dual_softmax(f0[:, keep0[0]], f1, 0.1)
    _, i_ids, j_ids, _ = select_coarse_matches(part, 0.05, 1, (6, 8), (6, 10), cells0=keep0, cells1=keep1)
    assert len(i_ids) > 5 and (i_ids % 2 == 0).all() and j_ids.max() < 60


@torch.no_grad()
def test_xfeat_network_fast_paths():
    """A random xfeat network: top_k above the cell count and local_fpn change nothing; a smaller
    top_k matches only ranked cells."""
    h, w = 128, 160
    image0 = torch.from_numpy(textured_image(h + 8, w + 16, seed=5))
    image0, image1 = image0[None, None, :h, :w].contiguous(), image0[None, None, 8:, 16:].contiguous()
    torch.manual_seed(0)
    exhaustive = ELoFTR({"name": "xfeat", "match_coarse": {"top_k": None}, "match_fine": {"local_fpn": False}})
    calibrate_batchnorm(exhaustive, torch.cat([image0, image1]))
    state = exhaustive.state_dict()

    def run(**conf):
        net = ELoFTR({"name": "xfeat", **conf})
        net.load_state_dict(state)
        return net.eval()(image0, image1)

    reference = exhaustive.eval()(image0, image1)
    assert len(reference["keypoints0"]) > 20
    same = run(match_coarse={"top_k": 10_000})
    assert all(torch.equal(a, b) for a, b in zip(same["coarse_ids"], reference["coarse_ids"]))
    torch.testing.assert_close(same["keypoints1"], reference["keypoints1"], rtol=0, atol=1e-4)
    few = run(match_coarse={"top_k": 100})
    _, _, _, reliability0 = exhaustive.backbone(image0)
    ranked = set(top_cells(reliability0, 100).flatten().tolist())
    assert 0 < len(few["keypoints0"]) <= 100 and set(few["coarse_ids"][1].tolist()) <= ranked
    assert (few["matchability0"].flatten(1)[:, sorted(set(range(h * w // 64)) - ranked)] < 0.5).all()


def test_top_k_conf_is_checked():
    assert resolve_model_conf("xfeat")["match_coarse"]["top_k"] > 0
    with pytest.raises(ConfError, match="top_k"):
        resolve_model_conf({"name": "lite", "match_coarse": {"top_k": 100}})
    for bad in (0, 1.0, 2.5, True):
        with pytest.raises(ConfError, match="top_k"):
            resolve_model_conf({"name": "xfeat", "match_coarse": {"top_k": bad}})
