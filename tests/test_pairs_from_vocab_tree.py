"""Vocabulary-tree pairs through pycolmap, with a tree built from the images' own SIFT."""

import pytest
from test_extract_global import VIEWS, scene_of, write_scenes

from sfm_reweight import pairs_from_vocab_tree
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs

CONF = {"name": "sift", "resize_max": 256, "max_num_features": 1024, "num_visual_words": 256, "num_iterations": 10}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return root, write_scenes(root)


def test_pairs_mostly_from_own_scene(scenes, tmp_path):
    image_dir, names = scenes
    k = VIEWS - 1
    pairs = pairs_from_vocab_tree.main(CONF, image_dir, tmp_path / "pairs.txt", k, vocab_tree=tmp_path / "tree.bin")
    assert read_pairs(tmp_path / "pairs.txt") == pairs
    assert all(a != b for a, b in pairs)
    assert [q for q, _ in pairs] == [n for n in names for _ in range(k)]  # every image, best first
    same = [scene_of(a) == scene_of(b) for a, b in pairs]
    assert sum(same) / len(same) >= 0.7
    # the tree written by the first run is read by the next, not built again: the same retrieval, up to
    # images of equal score (threads order ties, which can swap a query's last image for another)
    built = (tmp_path / "tree.bin").stat().st_mtime_ns
    again = pairs_from_vocab_tree.main(CONF, image_dir, tmp_path / "again.txt", k, vocab_tree=tmp_path / "tree.bin")
    assert (tmp_path / "tree.bin").stat().st_mtime_ns == built
    assert [q for q, _ in again] == [q for q, _ in pairs]
    assert len(set(again) & set(pairs)) >= 0.9 * len(pairs)
    assert sum(scene_of(a) == scene_of(b) for a, b in again) / len(again) >= 0.7


def test_bad_tree_file_is_an_input_error(scenes, tmp_path):
    (tmp_path / "tree.bin").write_bytes(b"not a tree")
    with pytest.raises(InputError, match="tree.bin"):
        pairs_from_vocab_tree.main(
            CONF, scenes[0], tmp_path / "pairs.txt", 2, image_list=scenes[1][:4], vocab_tree=tmp_path / "tree.bin"
        )
