"""Checkpoints: official layout, our format, identity at load, mismatches, fusion."""

import pytest
import torch

from helpers.calibration import calibrate_batchnorm, textured_image
from sfm_reweight.model.eloftr import ELoFTR
from sfm_reweight.model.weights import CheckpointError, load_weights, model_from_checkpoint, save_checkpoint


def texture_pair(h=192, w=256, dy=8, dx=16):
    t = torch.from_numpy(textured_image(h + dy, w + dx))[None, None]
    return t[..., :h, :w].clone(), t[..., dy:, dx:].clone()


@pytest.fixture(scope="module")
def full_off() -> ELoFTR:
    """The official network: as an official checkpoint loads (with the official sub-pixel block)."""
    model = ELoFTR({"name": "full", "reweight": {"mode": "off"}, "match_fine": {"official_block": True}})
    calibrate_batchnorm(model, torch.cat(texture_pair()))
    return model


@pytest.fixture(scope="module")
def official_ckpt(full_off, tmp_path_factory):
    """A file in the official layout: Lightning's {"state_dict": {"matcher.<key>": ...}} plus other keys."""
    path = tmp_path_factory.mktemp("ckpt") / "eloftr_outdoor.ckpt"
    state = {f"matcher.{k}": v for k, v in full_off.state_dict().items()}
    torch.save({"epoch": 29, "global_step": 1000, "state_dict": state}, path)
    return path


def run(model, *images):
    with torch.no_grad():
        return model.eval()(*images)


def test_official_layout_loads_strictly(full_off, official_ckpt):
    assert len(torch.load(official_ckpt)["state_dict"]) == 447
    model = ELoFTR({"name": "full", "reweight": {"mode": "off"}})
    assert not model.conf["match_fine"]["official_block"]
    report = load_weights(model, official_ckpt)
    assert report.layout == "official" and report.initialized == []
    assert model.conf["match_fine"]["official_block"]  # the sub-pixel indexing its weights were trained with
    for k, v in full_off.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k


@pytest.mark.parametrize("mode", ["bias", "rescale", "both"])
def test_reweighting_starts_as_eloftr(full_off, official_ckpt, mode):
    images = texture_pair()
    reference = run(full_off, *images)
    model = ELoFTR({"name": "full", "reweight": {"mode": mode}})
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)  # whatever was there before loading must not matter
    report = load_weights(model, official_ckpt)
    n_layers = len(model.loftr_coarse.layers)
    gates = [name for name in report.initialized if ".matchability_" in name]
    assert len(gates) == n_layers * (2 if mode == "both" else 1)
    assert sorted(set(report.initialized) - set(gates)) == ["matchability.offset", "matchability.scale"]
    out = run(model, *images)
    assert len(reference["confidence"]) > 50
    for key in ("keypoints0", "keypoints1", "confidence"):
        assert torch.equal(out[key], reference[key]), key
    assert out["matchability0"].min() >= 0 and out["matchability0"].max() <= 1

    with torch.no_grad():  # the gates do act: moved off zero, the outputs change
        for layer in model.loftr_coarse.layers:
            for gate in (layer.matchability_bias, layer.matchability_rescale):
                if gate is not None:
                    gate.fill_(0.5)
    moved = run(model, *images)
    assert len(moved["confidence"]) != len(reference["confidence"]) or not torch.equal(
        moved["keypoints1"], reference["keypoints1"]
    )


def test_own_format_round_trip(tmp_path):
    model = ELoFTR("lite")
    with torch.no_grad():
        for layer in model.loftr_coarse.layers:
            layer.matchability_bias.fill_(0.3)
    path = save_checkpoint(model, tmp_path / "lite.pt", step=12)
    loaded, report = model_from_checkpoint(path)
    assert report.layout == "sfm-reweight" and loaded.conf == model.conf
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert torch.load(path)["step"] == 12

    half = save_checkpoint(model, tmp_path / "lite16.pt", half=True)
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded16, _ = model_from_checkpoint(half)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert torch.allclose(loaded16.state_dict()[k], v, rtol=1e-3, atol=1e-3), k


def test_checkpoint_without_map_calibration_loads_with_identity(tmp_path):
    """Our checkpoints written before MatchabilityCalibration existed keep their gates; the calibration starts at
    identity."""
    model = ELoFTR("lite")
    with torch.no_grad():
        model.loftr_coarse.layers[0].matchability_rescale.fill_(0.4)
    path = save_checkpoint(model, tmp_path / "lite.pt")
    ckpt = torch.load(path)
    for name in ("matchability.scale", "matchability.offset"):
        del ckpt["state_dict"][name]
    torch.save(ckpt, path)
    loaded, report = model_from_checkpoint(path)
    assert report.initialized == ["matchability.offset", "matchability.scale"]
    assert loaded.loftr_coarse.layers[0].matchability_rescale.item() == pytest.approx(0.4)
    assert loaded.matchability.scale.item() == 1 and loaded.matchability.offset.item() == 0


@pytest.mark.parametrize("mode", ["off", "bias", "rescale", "both"])
def test_plain_loading_gives_every_mode_the_same_network(tmp_path, mode):
    """The ablation's common start: a `both` file loaded `plain` computes its network without reweighting."""
    trained = ELoFTR("lite")
    calibrate_batchnorm(trained, torch.cat(texture_pair()))
    with torch.no_grad():
        for layer in trained.loftr_coarse.layers:
            layer.matchability_bias.fill_(0.3)
            layer.matchability_rescale.fill_(-0.2)
        trained.matchability.offset.fill_(1.5)
    path = save_checkpoint(trained, tmp_path / "lite.pt")
    model = ELoFTR({"name": "lite", "reweight": {"mode": mode}})
    report = load_weights(model, path, plain=True)
    assert report.initialized == sorted(model.reweighting_parameter_names())
    assert all(p.item() in (0.0, 1.0) for n, p in model.named_parameters() if n in report.initialized)
    trained.reset_reweighting()
    expected, got = run(trained, *texture_pair()), run(model, *texture_pair())
    assert len(expected["confidence"]) > 0
    for key in ("keypoints0", "keypoints1", "confidence"):
        assert torch.equal(got[key], expected[key]), key


def test_mismatched_configuration_names_the_keys(tmp_path, official_ckpt):
    lite_both = save_checkpoint(ELoFTR("lite"), tmp_path / "lite.pt")
    with pytest.raises(CheckpointError, match=r"lite\.pt.*unexpected keys.*matchability_bias"):
        load_weights(ELoFTR({"name": "lite", "reweight": {"mode": "off"}}), lite_both)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*backbone\.layer0\.rbr_dense\.conv\.weight"):
        load_weights(ELoFTR("full"), lite_both)
    with pytest.raises(CheckpointError, match=r"eloftr_outdoor\.ckpt.*'lite'.*official EfficientLoFTR"):
        load_weights(ELoFTR("lite"), official_ckpt)


def test_bad_files_are_named(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt: not a readable torch checkpoint"):
        load_weights(ELoFTR("lite"), text)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_weights(ELoFTR("lite"), tmp_path / "missing.ckpt")
    listing = tmp_path / "list.pt"
    torch.save([1, 2, 3], listing)
    with pytest.raises(CheckpointError, match="list.pt: expected a dict"):
        load_weights(ELoFTR("lite"), listing)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_checkpoint(ELoFTR("lite"), tmp_path / "lite.pt")
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ELoFTR("lite"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lite.pt"]


def test_fusion_changes_outputs_by_at_most_1e5_relative(full_off):
    """Fused, the matches are the same and their keypoints move by < 1e-5 of the image size.

    Inside the network the fp32 rounding of 21 fused layers adds up to ~1e-5 of the coarse
    features (with these calibrated statistics) and ~1e-4 of the dual-softmax confidences.
    """
    images = texture_pair()
    model = ELoFTR({"name": "full", "reweight": {"mode": "off"}}).eval()
    model.load_state_dict(full_off.state_dict())
    with torch.no_grad():
        before = [f.clone() for f in model.backbone(images[0])]
        reference = run(model, *images)
        model.fuse()
        after = model.backbone(images[0])
    assert not any(".rbr_dense." in k for k in model.state_dict())
    for b, a in zip(before, after):
        assert (a - b).abs().max() <= 5e-5 * b.abs().max()
    fused = run(model, *images)
    assert all(torch.equal(x, y) for x, y in zip(fused["coarse_ids"], reference["coarse_ids"]))
    size = max(images[0].shape[-2:])
    for key in ("keypoints0", "keypoints1"):
        assert (fused[key] - reference[key]).abs().max() <= 1e-5 * size
    assert (fused["confidence"] - reference["confidence"]).abs().max() <= 1e-3


def test_fused_official_layout_loads(full_off, tmp_path):
    """The deploy layout (rbr_reparam, 147 keys) loads too: the model is fused first."""
    fused = ELoFTR(full_off.conf)
    fused.load_state_dict(full_off.state_dict())
    fused.fuse()
    path = tmp_path / "deploy.ckpt"
    torch.save({"state_dict": {f"matcher.{k}": v for k, v in fused.state_dict().items()}}, path)
    assert len(torch.load(path)["state_dict"]) == 147
    model = ELoFTR({"name": "full", "reweight": {"mode": "off"}})
    load_weights(model, path)
    images = texture_pair()
    assert torch.equal(run(model, *images)["keypoints1"], run(fused, *images)["keypoints1"])


class _RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_needs_full_unpickling_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hparams": _RunsCode(marker)}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: holds Python objects .* refused"):
        load_weights(ELoFTR("lite"), evil)
    assert not marker.exists()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="garbage.pt: not a readable torch checkpoint"):
        load_weights(ELoFTR("lite"), garbage)
