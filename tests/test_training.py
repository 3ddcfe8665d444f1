"""Training side: warps, supervision, losses, homography pairs, the resumable loop."""

import csv
import math
import shutil

import cv2
import numpy as np
import pytest
import torch
from helpers.calibration import textured_image

from sfm_reweight.eval import ablation
from sfm_reweight.metrics import auroc
from sfm_reweight.model.dual_softmax import DualSoftmax
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.fine_matching import subpixel_offsets
from sfm_reweight.model.weights import model_from_checkpoint, read_checkpoint
from sfm_reweight.train import logs, recipes, trainer, validation
from sfm_reweight.train.data_mix import collate
from sfm_reweight.train.homography_pairs import HomographyPairConf, HomographyPairs, photometric
from sfm_reweight.train.losses import coarse_negative_loss
from sfm_reweight.train.supervision import CoarseSupervision, coarse_supervision, fine_supervision
from sfm_reweight.train.warps import DepthWarp, HomographyWarp
from sfm_reweight.utils.conf import merge


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(3):
        cv2.imwrite(str(folder / f"p{seed}.png"), (textured_image(300, 400, seed=seed) * 255).astype(np.uint8))
    return folder


def translation(dx, dy):
    return torch.tensor([[[1.0, 0, dx], [0, 1, dy], [0, 0, 1]]])


def test_homography_warp_and_coarse_ground_truth():
    h, w = 64, 96
    valid = torch.ones(1, h, w, dtype=torch.bool)
    warp = HomographyWarp(translation(16, 8), valid, valid)
    sup = coarse_supervision(warp, 1, (h // 8, w // 8), (h // 8, w // 8))
    # cell (x, y) of image 0 matches cell (x + 2, y + 1) when that lies inside image 1
    x0, y0 = sup.i_ids % 12, sup.i_ids // 12
    assert torch.equal(sup.j_ids, (y0 + 1) * 12 + (x0 + 2))
    assert len(sup.i_ids) == (8 - 1) * (12 - 2)
    assert torch.allclose(sup.weights, torch.ones_like(sup.weights))
    assert sup.matchable0.sum() == len(sup.i_ids) and sup.matchable1.sum() == len(sup.j_ids)
    # an occluder in image 1 removes its cells from the ground truth
    occluded = valid.clone()
    occluded[:, :32, :48] = False
    sup2 = coarse_supervision(HomographyWarp(translation(16, 8), valid, occluded), 1, (8, 12), (8, 12))
    assert len(sup2.i_ids) < len(sup.i_ids)


def test_cells_without_a_correspondent():
    """Shifted 16 px right, 8 down: image 0's cells that leave image 1 by more than a cell, and those
    on an occluder, have no correspondent; those just past the border, and the round-trip failures, do."""
    h, w = 64, 96
    valid = torch.ones(1, h, w, dtype=torch.bool)
    sup = coarse_supervision(HomographyWarp(translation(16, 8), valid, valid), 1, (8, 12), (8, 12))
    x0, y0 = torch.arange(96) % 12, torch.arange(96) // 12
    # cell x lands at 8x + 16: past the last pixel (95) by more than 8 px from x = 11 on
    assert torch.equal(sup.unmatched0[0], (8 * x0 + 16 > 95 + 8) | (8 * y0 + 8 > 63 + 8))
    assert not (sup.unmatched0 & sup.matchable0).any() and not (sup.unmatched1 & sup.matchable1).any()
    assert torch.equal(sup.unmatched1[0], (8 * x0 - 16 < -8) | (8 * y0 - 8 < -8))
    occluded = valid.clone()
    occluded[:, :32, :48] = False  # an occluder in image 1's top-left quarter hides image 0's cells there
    sup2 = coarse_supervision(HomographyWarp(translation(16, 8), valid, occluded), 1, (8, 12), (8, 12))
    hidden = (8 * x0 + 16 <= 47) & (8 * y0 + 8 <= 31)
    assert hidden.any() and sup2.unmatched0[0][hidden].all()
    # the occluder's own cells show nothing of image 0 (those whose warp lands just past the border excepted)
    assert sup2.unmatched1[0][(x0 >= 2) & (x0 < 6) & (y0 >= 1) & (y0 < 4)].all()


def test_depth_cells_without_a_correspondent():
    """Unknown depth is not evidence: only points of known depth that leave image 1 or are hidden there count."""
    h, w, f = 48, 64, 50.0
    K = torch.tensor([[[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]])
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = -0.4  # points move left by 10 px
    depth0 = torch.full((1, h, w), 2.0)
    depth0[0, :, 50:] = 0.0  # unknown
    depth1 = torch.full((1, h, w), 2.0)
    depth1[0, :10, 30:40] = 1.0  # something closer in front of the plane in image 1
    points = torch.tensor([[5.0, 20.0], [30.0, 20.0], [45.0, 5.0], [55.0, 20.0], [-20.0, 20.0]])
    flags = DepthWarp(depth0, depth1, K, K, T).no_correspondent(points, torch.zeros(5, dtype=torch.long), 8.0)
    # x 5 -> -5 (within the margin), 30 -> 20 (seen), 45 -> 35 at row 5 (hidden), 55 (unknown depth)
    assert flags.tolist() == [False, False, True, False, False]
    far = DepthWarp(depth0, depth1, K, K, T).no_correspondent(
        torch.tensor([[1.0, 20.0]]), torch.zeros(1, dtype=torch.long), 2.0
    )
    assert far.tolist() == [True]  # lands at -9, beyond a 2 px margin


def test_negative_coarse_loss_is_the_best_confidence_of_cells_without_a_correspondent():
    torch.manual_seed(0)
    f0, f1 = torch.randn(1, 12, 8, requires_grad=True), torch.randn(1, 10, 8)
    ds = DualSoftmax(f0, f1, 2.0, chunk_elements=25)  # several row chunks
    none = torch.zeros(0, dtype=torch.long)
    unmatched0, unmatched1 = torch.zeros(1, 12, dtype=torch.bool), torch.zeros(1, 10, dtype=torch.bool)
    unmatched0[0, [2, 7]] = True
    unmatched1[0, 4] = True
    sup = CoarseSupervision(none, none, none, none.float(), ~unmatched0, ~unmatched1, unmatched0, unmatched1)
    P = ds.matrix()[0]
    best = torch.stack([P[2].max(), P[7].max(), P[:, 4].max()])
    expected = -(1 - best).log().mean()
    (expected_grad,) = torch.autograd.grad(expected, f0, retain_graph=True)
    loss = coarse_negative_loss(ds, sup)
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert f0.grad[0, [2, 7]].abs().sum() > 0  # it reaches the features, as the max over P does
    assert torch.allclose(f0.grad, expected_grad, atol=1e-6)
    sup.unmatched0[:], sup.unmatched1[:] = False, False
    assert float(coarse_negative_loss(DualSoftmax(f0.detach(), f1, 2.0), sup)) == 0.0


def test_fine_ground_truth_subpixel():
    valid = torch.ones(1, 64, 96, dtype=torch.bool)
    warp = HomographyWarp(translation(16.3, 7.8), valid, valid)
    b, i, j = torch.tensor([0]), torch.tensor([3 * 12 + 4]), torch.tensor([4 * 12 + 6])
    sup = fine_supervision(warp, b, i, j, 12, 12)
    assert len(sup.u_ids) > 40  # most of the 8x8 window lands inside image 1's window
    u = sup.u_ids
    assert torch.allclose(sup.offsets, torch.tensor([0.3, -0.2]).expand_as(sup.offsets), atol=1e-4)
    # pixel u at (ux, uy) moves by (0.3, -0.2) + (16, 8) - (cell shift 16, 8) = rounding to the same index
    assert torch.equal(sup.v_ids, u)


@pytest.mark.parametrize("true_offset", [(0.0, 0.0), (0.3, -0.2)])
def test_subpixel_block_is_centred_on_the_pixel_match(true_offset):
    """Stage-2 scores peaked at the true sub-pixel position of pixel v = (3, 4) of image 1's inner
    window: the centred block recovers the offset's direction, the official block is a pixel off."""
    w, v = 8, torch.tensor([4 * 8 + 3])
    rows, cols = torch.meshgrid(torch.arange(w + 2.0), torch.arange(w + 2.0), indexing="ij")
    x, y = 3 + 1 + true_offset[0], 4 + 1 + true_offset[1]  # (W+2)-window coordinates of the truth
    scores = -((cols - x) ** 2 + (rows - y) ** 2)
    sim_ff = torch.zeros(1, w * w, (w + 2) ** 2)
    sim_ff[0, 5] = scores.flatten()
    m, u = torch.tensor([0]), torch.tensor([5])
    centred = subpixel_offsets(sim_ff, m, u, v, temperature=1.0)[0]
    official = subpixel_offsets(sim_ff, m, u, v, temperature=1.0, official_block=True)[0]
    truth = torch.tensor(true_offset)
    assert torch.all((centred - truth).abs() < 0.2) and torch.all(centred * truth >= 0)
    assert torch.all(official - truth > 0.5)  # pulled towards the block's right-down cell


def test_depth_warp_matches_homography_of_a_plane():
    """A fronto-parallel plane at depth 2 seen by a camera moved sideways is a pure translation."""
    h, w, f = 48, 64, 50.0
    K = torch.tensor([[[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]])
    T = torch.eye(4)[None].clone()
    T[0, 0, 3] = -0.4  # camera 1 is 0.4 to the right: points move left by f * 0.4 / 2 = 10 px
    depth = torch.full((1, h, w), 2.0)
    points = torch.tensor([[20.0, 10.0], [40.0, 30.0], [5.0, 5.0]])
    warped, valid = DepthWarp(depth, depth, K, K, T)(points, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(warped, points - torch.tensor([10.0, 0.0]), atol=1e-4)
    assert valid.tolist() == [True, True, False]  # the last one leaves image 1
    back, _ = DepthWarp(depth, depth, K, K, T).inverse()(warped[:2], torch.zeros(2, dtype=torch.long))
    assert torch.allclose(back, points[:2], atol=1e-4)


def test_homography_pairs_are_consistent_and_deterministic(photos):
    data = HomographyPairs(photos, HomographyPairConf(size=(160, 128), occluder_prob=0.0))
    a, b = data[5], data[5]
    assert all(torch.equal(a[k], b[k]) for k in a)
    H = a["H_0to1"].numpy().astype(np.float64)
    img0, img1 = a["image0"][0].numpy(), a["image1"][0].numpy()
    # pixels of image 0 land, through H, where image 1 shows similar content (up to photometric change)
    ys, xs = np.nonzero(a["valid0"].numpy())
    pts = np.stack([xs, ys], 1)[::37].astype(np.float64)
    proj = cv2.perspectiveTransform(pts[None], H)[0]
    inside = (proj[:, 0] >= 1) & (proj[:, 0] < 158) & (proj[:, 1] >= 1) & (proj[:, 1] < 126)
    proj, pts = proj[inside], pts[inside].astype(int)
    ok = a["valid1"].numpy()[proj[:, 1].round().astype(int), proj[:, 0].round().astype(int)]
    v0 = img0[pts[ok, 1], pts[ok, 0]]
    v1 = cv2.remap(img1, proj[ok, 0].astype(np.float32)[None], proj[ok, 1].astype(np.float32)[None], cv2.INTER_LINEAR)[
        0
    ]
    assert len(v0) > 20
    assert np.corrcoef(v0, v1)[0, 1] > 0.8


def test_night_views_keep_the_geometry_and_pool_the_light(photos):
    day = HomographyPairs(photos, HomographyPairConf(size=(160, 128), occluder_prob=0.0))[2]
    night = HomographyPairs(photos, HomographyPairConf(size=(160, 128), occluder_prob=0.0, night_prob=1.0))[2]
    assert torch.equal(day["H_0to1"], night["H_0to1"])
    assert day["valid0"].all() and day["valid1"].all()  # no black border to dominate the spread below
    for k in (0, 1):
        lit, dark = day[f"image{k}"][0].numpy(), night[f"image{k}"][0].numpy()
        assert not np.allclose(lit, dark, atol=0.05)
        # lamps light the scene unevenly: the brightness of blocks of 32 px spreads several times more
        blocks = [cv2.resize(image, (5, 4), interpolation=cv2.INTER_AREA) for image in (lit, dark)]
        assert blocks[1].std() / blocks[1].mean() > 3 * blocks[0].std() / blocks[0].mean()


def test_no_night_draws_nothing_more():
    image = textured_image(64, 80, seed=1)
    plain, zero = np.random.default_rng(7), np.random.default_rng(7)
    assert np.array_equal(photometric(plain, image), photometric(zero, image, 0.0))
    assert plain.random() == zero.random()  # so the pairs of recipes without nights stay as they were


def tiny_conf(photos, steps=4):
    conf = recipes.confs["lite_homography"]
    return merge(
        conf,
        {
            "data": {"folder": str(photos), "size": [128, 96], "seed": 0},
            "steps": steps,
            "batch_size": 2,
            "warmup_steps": 2,
            "checkpoint_every": 2,
            "val_every": 2,
            "val_pairs": 2,
        },
    )


def test_losses_are_finite_and_decrease_on_one_batch(photos):
    torch.manual_seed(0)
    model = ELoFTR("lite").train()
    data = HomographyPairs(photos, HomographyPairConf(size=(128, 96), occluder_prob=0.5))
    batch = collate([data[0], data[1]], torch.device("cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    weights = recipes.confs["lite_mix_large_negatives"]["loss_weights"]
    first = None
    for _ in range(6):
        terms = trainer.training_losses(model, batch, weights)
        assert set(terms) == {"coarse", "fine", "subpixel", "matchability", "coarse_negative", "total"}
        assert all(torch.isfinite(v) for v in terms.values())
        first = first if first is not None else float(terms["total"].detach())
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    assert float(terms["total"]) < first


def test_map_calibration_moves_at_its_own_learning_rate(photos):
    """Adam moves each parameter ~lr per step: the calibration's scalars get `calibration_lr`, the gates
    `gate_lr`, the rest `lr`."""
    torch.manual_seed(0)
    conf = recipes.confs["lite_mix"]
    model = ELoFTR("lite").train()
    batch = collate([HomographyPairs(photos, HomographyPairConf(size=(128, 96)))[0]], torch.device("cpu"))
    before = {k: v.detach().clone() for k, v in model.named_parameters() if "matchability" in k}
    optimizer = torch.optim.AdamW(trainer.parameter_groups(model, conf))
    trainer.training_losses(model, batch, conf["loss_weights"])["total"].backward()
    optimizer.step()
    moved = {k: (dict(model.named_parameters())[k] - v).abs().item() for k, v in before.items()}
    assert moved["matchability.offset"] == pytest.approx(conf["calibration_lr"], rel=0.01)
    gates = [k for k in moved if not k.startswith("matchability.")]
    assert gates and all(v <= 1.01 * conf["gate_lr"] for k, v in moved.items() if k in gates)
    assert max(moved[k] for k in gates) == pytest.approx(conf["gate_lr"], rel=0.01)


def test_an_unfrozen_backbone_trains_at_its_own_rate():
    """xfeat_unfrozen optimises XFeat's backbone at backbone_lr, below the rest; xfeat_mix not at all."""

    def backbone_rates(conf: dict) -> list[float]:
        model = ELoFTR(conf["model"])
        backbone = {id(p) for p in model.backbone.parameters()}
        groups = trainer.parameter_groups(model, conf)
        return [g["lr"] for g in groups for p in g["params"] if id(p) in backbone]

    unfrozen = recipes.confs["xfeat_unfrozen"]
    rates = backbone_rates(unfrozen)
    assert len(rates) > 10 and set(rates) == {unfrozen["backbone_lr"]} and unfrozen["backbone_lr"] < unfrozen["lr"]
    assert backbone_rates(recipes.confs["xfeat_mix"]) == []


def test_resume_continues_exactly(photos, tmp_path):
    conf = tiny_conf(photos)
    straight = tmp_path / "straight"
    trainer.main(conf, straight)
    split = tmp_path / "split"
    trainer.main(conf, split, max_steps=2, workers=1)  # batches from a worker process: the same run
    assert torch.load(split / "last.pt", weights_only=False)["step"] == 2
    trainer.main(conf, split)
    for key in ("model", "ema"):
        a = torch.load(straight / "last.pt", weights_only=False)[key]
        b = torch.load(split / "last.pt", weights_only=False)[key]
        for k in a:
            assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), (key, k)
    rows = list(csv.DictReader(open(split / "log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert (split / "loss.png").stat().st_size > 0 and (split / "val.csv").exists()
    # in-loop validation is at the conf's coarse threshold: the same figures as --validate there
    val = list(csv.DictReader(open(split / "val.csv")))[-1]
    [again] = validation.validate_state(split / "last.pt", [conf["val_coarse_threshold"]])
    assert float(val["thr"]) == again["thr"] and float(val["matches"]) == pytest.approx(again["matches"])
    with pytest.raises(ValueError, match="another configuration"):
        trainer.main(merge(conf, {"lr": 0.5}), split)
    moved = tmp_path / "moved"
    shutil.copytree(photos, moved)  # the same data in another folder: the run resumes (and is done)
    trainer.main(merge(conf, {"data": {"folder": str(moved)}, "val_oxford": str(tmp_path / "oxford")}), split)
    exported = trainer.export(split / "last.pt", tmp_path / "lite.pt")
    model, _ = model_from_checkpoint(exported)
    ema = torch.load(split / "last.pt", weights_only=False)["ema"]
    for k, v in model.state_dict().items():
        assert torch.allclose(v.float(), ema[f"module.{k}"].float(), atol=1e-3, rtol=1e-3), k


def test_command_line_overrides_reach_a_copy_of_the_conf(photos):
    args = trainer.parse_args(
        [
            "--conf",
            "lite_mix_large_long",
            "--output",
            "run",
            "--steps",
            "7",
            "--data_seed",
            "9",
            "--photos",
            str(photos),
            "--mode",
            "bias",
        ]
    )
    conf = trainer.training_conf(args)
    assert conf["steps"] == 7 and conf["data"]["seed"] == 9 and conf["data"]["folder"] == str(photos)
    assert conf["model"]["reweight"]["mode"] == "bias"
    assert recipes.confs["lite_mix_large_long"]["data"]["seed"] == 3  # the named conf is untouched
    assert (
        trainer.training_conf(trainer.parse_args(["--conf", "lite_mix_large_long", "--output", "run"]))
        == recipes.confs["lite_mix_large_long"]
    )


def test_data_mix_is_deterministic_per_step(photos):
    from sfm_reweight.train.data_mix import StepBatches, batch_items, build_sources

    data_conf = merge(recipes.confs["xfeat_repeated"]["data"], {"folder": str(photos), "size": [96, 64], "seed": 1})
    sources = build_sources(data_conf)
    kinds = [batch_items(sources, data_conf, step, 1)[0] for step in range(12)]
    assert set(kinds) == {"homography", "synthetic", "repeated"}
    kind, items = batch_items(sources, data_conf, 7, 1)
    kind_again, items_again = batch_items(sources, data_conf, 7, 1)
    assert kind == kind_again and torch.equal(items[0]["image1"], items_again[0]["image1"])
    steps = list(StepBatches(sources, data_conf, 1, 6, 9))  # plain iteration ends after the last step
    assert len(steps) == 3 and torch.equal(steps[1][0]["image1"], items[0]["image1"])


def test_ablation_trains_each_mode_and_seed_at_equal_budget_and_resumes(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(recipes.confs, "tiny", tiny_conf(photos, steps=2))
    scored = []
    monkeypatch.setattr(
        ablation,
        "real_data_scores",
        lambda matcher, conf, weights, data, out: (
            scored.append((conf, weights)) or {name: 1.0 for name in ablation.BENCHMARKS}
        ),
    )
    results = ablation.main(2, tmp_path, tmp_path, base="tiny", seeds=(0, 1))
    assert list(results) == [*ablation.MODES, "opencv_sift"]
    runs = [tmp_path / m / f"seed{s}" for m in ablation.MODES for s in (0, 1)]
    for run in runs:
        ckpt = torch.load(run / "lite_step2.pt", weights_only=False)
        assert ckpt["conf"]["reweight"]["mode"] == run.parent.name and ckpt["step"] == 2
    seed1 = read_checkpoint(runs[1] / "last.pt")["conf"]
    assert seed1["seed"] == 1 and seed1["data"]["seed"] == recipes.confs["tiny"]["data"]["seed"] + 1
    fine = [model_from_checkpoint(r / "lite_step2.pt")[0].fine_preprocess.layer3_outconv.weight for r in runs[:2]]
    assert not torch.equal(*fine)  # another seed, another initialisation
    for row in results["both"]:
        assert 0.0 <= row["synthetic AUC@5px"] <= 100.0 and 0.0 <= row["synthetic AUROC"] <= 1.0 and row["s/step"] > 0
    assert all(math.isnan(row["synthetic AUROC"]) for row in results["off"])  # no maps without reweighting
    assert scored == [("lite", r / "lite_step2.pt") for r in runs] + [("lite", None)]
    out = capsys.readouterr().out
    assert "| both |" in out and "| off | " in out and (tmp_path / "table.md").exists()
    monkeypatch.setattr(trainer, "main", None)  # a rerun only scores: nothing is trained again
    ablation.main(2, tmp_path, tmp_path, base="tiny", seeds=(0, 1))


def test_validate_state_at_other_thresholds(photos, tmp_path):
    trainer.main(tiny_conf(photos, steps=2), tmp_path)
    rows = validation.validate_state(tmp_path / "last.pt", [0.2, 0.0])
    assert [r["thr"] for r in rows] == [0.2, 0.0] and all(r["step"] == 2 for r in rows)
    assert rows[1]["matches"] >= rows[0]["matches"]  # a lower threshold keeps at least as many matches
    assert all(0.0 <= r["matchability_auroc"] <= 1.0 for r in rows)  # tiny_conf reweights: maps exist
    assert all(0.0 <= r["no_correspondent_share"] <= 1.0 for r in rows)
    assert all(math.isnan(r["fine_error_px"]) or 0.0 <= r["fine_error_px"] <= 3.0 for r in rows)
    # the exported (fp16) weights validate on the same pairs: the same metrics, up to fp16 rounding
    exported = trainer.export(tmp_path / "last.pt", tmp_path / "lite.pt")
    [row] = validation.validate_checkpoint(exported, tiny_conf(photos, steps=2), [0.0])
    assert row.keys() == rows[1].keys() and row["step"] is None
    assert abs(row["matches"] - rows[1]["matches"]) <= 0.05 * rows[1]["matches"] + 1


def test_auroc_of_hand_made_scores():
    assert auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5  # ties count half
    assert auroc([0.9, 0.3, 0.5, 0.1], [1, 1, 0, 0]) == 0.75  # 3 of the 4 (positive, negative) pairs ordered
    assert np.isnan(auroc([0.1, 0.2], [1, 1]))


def test_log_of_an_older_version_gets_new_columns(tmp_path):
    log = tmp_path / "val.csv"
    logs.append_csv(log, {"step": 500, "auc@5": 0.1})
    logs.append_csv(log, {"step": 1000, "auc@5": 0.2, "matchability_auroc": 0.6})
    logs.append_csv(log, {"step": 1500, "auc@5": 0.3, "matchability_auroc": 0.7})
    rows = list(csv.DictReader(open(log)))
    assert [r["step"] for r in rows] == ["500", "1000", "1500"]
    assert [r["matchability_auroc"] for r in rows] == ["", "0.6", "0.7"]
