"""One configuration mechanism (utils/conf.py) behind the model, matcher, stage and training confs."""

import pytest

from sfm_reweight import match_dense, reconstruction
from sfm_reweight.matcher import resolve_matcher_conf
from sfm_reweight.model.config import resolve_model_conf
from sfm_reweight.train import recipes
from sfm_reweight.utils.conf import ConfError, Options, merge, resolve
from sfm_reweight.utils.errors import SfmReweightError


def test_unknown_keys_are_refused_at_every_level_with_the_valid_ones():
    with pytest.raises(
        ConfError, match=r"unknown key 'thr' in model configuration lite; expected one of \[.*'match_coarse'"
    ):
        resolve_model_conf({"name": "lite", "thr": 0.1})
    with pytest.raises(ConfError, match=r"unknown key 'thrs' in model configuration lite.match_coarse"):
        resolve_model_conf({"name": "lite", "match_coarse": {"thrs": 0.1}})
    with pytest.raises(ConfError, match=r"matcher configuration xfeat.model.reweight"):
        resolve_matcher_conf({"name": "xfeat", "model": {"reweight": {"modes": "off"}}})
    with pytest.raises(ConfError, match=r"training configuration 'lite_mix'.data.homography"):
        merge(
            recipes.confs["lite_mix"],
            {"data": {"homography": {"max_rotations": 3}}},
            "training configuration 'lite_mix'",
        )
    with pytest.raises(ConfError, match="unknown matcher configuration 'tiny'; expected one of"):
        resolve_matcher_conf("tiny")
    with pytest.raises(ConfError, match=r"model configuration lite.coarse: expected a dict of settings, got 5"):
        resolve_model_conf({"name": "lite", "coarse": 5})
    with pytest.raises(ConfError, match=r"model configuration lite.coarse.nhead: expected a value like 4, got a dict"):
        resolve_model_conf({"name": "lite", "coarse": {"nhead": {"value": 8}}})
    assert issubclass(ConfError, SfmReweightError)


def test_nested_overrides_reach_every_level_and_leave_the_named_conf_alone():
    conf = resolve_matcher_conf({"name": "xfeat", "model": {"reweight": {"mode": "off"}}, "zooms": [0.5, 1.0]})
    assert conf["model"]["reweight"]["mode"] == "off" and conf["zooms"] == [0.5, 1.0] and conf["name"] == "xfeat"
    assert resolve_matcher_conf("xfeat")["model"]["reweight"]["mode"] == "both"
    dense = match_dense.resolve_conf({"name": "eloftr_reweight_lite", "model": {"network": {"rotations": [0, 180]}}})
    assert dense["model"]["network"]["rotations"] == [0, 180]
    assert "rotations" not in match_dense.confs["eloftr_reweight_lite"]["model"]["network"]
    with pytest.raises(ConfError, match=r"unknown key 'bogus' in matcher eloftr_reweight"):
        match_dense.resolve_conf({"name": "eloftr_reweight", "model": {"bogus": 1}})
    with pytest.raises(ConfError, match=r"an hloc-style conf without a name"):
        match_dense.resolve_conf({"output": "x", "model": {"name": "loftr"}, "preprocessing": {"grayscale": True}})


def test_library_options_are_open_and_stay_options():
    conf = resolve(
        reconstruction.confs,
        {"name": "incremental", "mapper_options": {"min_num_matches": 30}, "two_view": {"ransac": {"max_error": 2.0}}},
        "incremental",
        "configuration",
    )
    assert conf["mapper_options"] == {"min_num_matches": 30} and isinstance(conf["mapper_options"], Options)
    assert conf["two_view"]["ransac"] == {"max_num_trials": 20000, "min_inlier_ratio": 0.1, "max_error": 2.0}
    with pytest.raises(ConfError, match="expected a dict of options"):
        resolve(reconstruction.confs, {"mapper_options": 3}, "incremental", "configuration")


def test_matcher_confs_name_their_shipped_weights_explicitly():
    assert resolve_matcher_conf("lite")["weights"] == "lite"
    assert resolve_matcher_conf("xfeat")["weights"] == "xfeat-eloftr"
    assert resolve_matcher_conf("full")["weights"] is None
