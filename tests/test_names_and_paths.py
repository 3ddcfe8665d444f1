"""Image names in pairs files, image lists, query lists and folders: no silent wrong results from
names that collide in hloc's pair key, leave the image folder, are not canonical or hold whitespace;
pairs stages refuse inputs that allow no pair and counts below 1; descriptor readers say what a file
is when it is not a global-descriptors file."""

import os
import re

import h5py
import numpy as np
import pycolmap
import pytest

from sfm_reweight import (
    pairs_from_covisibility,
    pairs_from_exhaustive,
    pairs_from_poses,
    pairs_from_retrieval,
    pairs_from_sequential,
)
from sfm_reweight.extract_global import Codebook
from sfm_reweight.io import write_features, write_global_descriptor
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import collect_image_names, list_images, read_pairs, read_pairs_to_match
from sfm_reweight.utils.queries import read_queries, read_retrieval


def touch(root, *names) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def write_descriptors(path, names, dim=8, seed=0) -> None:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        for name in names:
            d = rng.normal(size=dim)
            write_global_descriptor(f, name, d / np.linalg.norm(d))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The folder of a synthetic COLMAP model of 4 registered images."""
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1, num_cameras_per_rig=1, num_frames_per_rig=4, num_points3D=30, camera_width=64, camera_height=48
    )
    pycolmap.set_random_seed(0)
    rec = pycolmap.synthesize_dataset(options)
    path = tmp_path_factory.mktemp("model")
    rec.write(path)
    return path


# --- 1. pair keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["sub-x.jpg a.jpg", "a.jpg sub-x.jpg"])
def test_pairs_whose_matches_keys_collide_are_refused(tmp_path, second):
    touch(tmp_path / "images", "sub/x.jpg", "sub-x.jpg", "a.jpg", "b.jpg")
    path = tmp_path / "pairs.txt"
    path.write_text(f"sub/x.jpg a.jpg\n{second}\n")
    with pytest.raises(InputError, match=r"pairs.txt: images 'sub/x.jpg' and 'sub-x.jpg' .*pair key") as err:
        read_pairs_to_match(path, tmp_path / "images")
    assert "\n" not in str(err.value)
    # the same two images with different partners have different keys: fine
    path.write_text("sub/x.jpg a.jpg\nsub-x.jpg b.jpg\n")
    assert read_pairs_to_match(path, tmp_path / "images")[1] == [("sub/x.jpg", "a.jpg"), ("sub-x.jpg", "b.jpg")]


# --- 2. names inside their folder, in canonical form -----------------------------------------------


OUTSIDE = [
    ("../secret/s.jpg", "not a path inside"),
    ("{root}/secret/s.jpg", "not a path inside"),  # absolute, and the file exists
    ("./A.jpg", "not in canonical form: write 'A.jpg'"),
    ("sub//A.jpg", "not in canonical form: write 'sub/A.jpg'"),
]


@pytest.fixture
def folder(tmp_path):
    touch(tmp_path / "images", "A.jpg", "B.jpg", "sub/A.jpg")
    touch(tmp_path, "secret/s.jpg")
    return tmp_path


@pytest.mark.parametrize("name, problem", OUTSIDE)
def test_pairs_file_names_must_be_canonical_and_inside_the_folder(folder, name, problem):
    name = name.format(root=folder)
    path = folder / "pairs.txt"
    path.write_text(f"# header\nA.jpg B.jpg\n{name} A.jpg\n")
    expected = rf"pairs.txt:3: image name {re.escape(repr(name))} is {re.escape(problem)}"
    with pytest.raises(InputError, match=expected):
        read_pairs(path, image_dir=folder / "images")
    with pytest.raises(InputError, match=expected):
        read_pairs(path)  # without a folder to check against, too
    with pytest.raises(InputError, match=expected):
        read_retrieval(path)


@pytest.mark.parametrize("name, problem", OUTSIDE)
def test_image_and_query_list_names_must_be_canonical_and_inside(folder, name, problem):
    name = name.format(root=folder)
    (folder / "list.txt").write_text(f"A.jpg\n\n{name}\n")
    with pytest.raises(InputError, match=rf"list.txt:3: image name {re.escape(repr(name))} is {re.escape(problem)}"):
        collect_image_names(folder / "list.txt")
    (folder / "queries.txt").write_text(f"# q\nA.jpg SIMPLE_PINHOLE 10 10 5 5 5\n{name} SIMPLE_PINHOLE 10 10 5 5 5\n")
    with pytest.raises(InputError, match=rf"queries.txt:3: image name {re.escape(repr(name))} is {re.escape(problem)}"):
        read_queries(folder / "queries.txt")


def test_symlinks_inside_the_folder_keep_working(folder):
    images = folder / "images"
    os.symlink(folder / "secret" / "s.jpg", images / "link.jpg")  # a file elsewhere, named inside the folder
    os.symlink(folder / "secret", images / "linked")
    (folder / "pairs.txt").write_text("link.jpg A.jpg\nlinked/s.jpg B.jpg\n")
    assert read_pairs(folder / "pairs.txt", image_dir=images) == [("link.jpg", "A.jpg"), ("linked/s.jpg", "B.jpg")]
    assert "link.jpg" in list_images(images)


# --- 3. whitespace in photo names -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["my photo.jpg", "tab\there.jpg"])
def test_photo_names_with_whitespace_are_refused_at_listing(tmp_path, bad):
    touch(tmp_path / "images", "a.jpg", bad)
    with pytest.raises(InputError, match=rf"images: image name {re.escape(repr(bad))} has whitespace"):
        list_images(tmp_path / "images")
    with pytest.raises(InputError, match=re.escape(repr(bad))):
        pairs_from_exhaustive.main(tmp_path / "pairs.txt", image_dir=tmp_path / "images")
    with pytest.raises(InputError, match=re.escape(repr(bad))):
        pairs_from_exhaustive.main(tmp_path / "pairs.txt", image_list=["a.jpg", bad])
    # names from a descriptors file never reach a pairs file that would read back wrong
    write_descriptors(tmp_path / "global.h5", ["a.jpg", bad])
    with pytest.raises(InputError, match=rf"pairs.txt: image name {re.escape(repr(bad))} has whitespace"):
        pairs_from_retrieval.main(tmp_path / "global.h5", tmp_path / "pairs.txt", 1)
    assert not (tmp_path / "pairs.txt").exists()


# --- 4. inputs that allow no pair --------------------------------------------------------------------


def test_pairs_need_two_images(tmp_path):
    touch(tmp_path / "one", "a.jpg")
    out = tmp_path / "pairs.txt"
    with pytest.raises(InputError, match=r"one: only one image \('a.jpg'\); pairs need at least two"):
        pairs_from_exhaustive.main(out, image_dir=tmp_path / "one")
    with pytest.raises(InputError, match=r"no pairs: .*'a.jpg'"):
        pairs_from_exhaustive.main(out, image_list=["a.jpg"], ref_list=["a.jpg"])
    assert pairs_from_exhaustive.main(out, image_list=["q.jpg"], ref_list=["a.jpg"]) == [("q.jpg", "a.jpg")]
    out.unlink()
    with pytest.raises(InputError, match=r"only one image"):
        pairs_from_sequential.main(out, image_dir=tmp_path / "one")
    write_descriptors(tmp_path / "global.h5", ["a.jpg", "b.jpg"])
    with pytest.raises(InputError, match=r"global.h5: no pairs: .*themselves"):
        pairs_from_retrieval.main(tmp_path / "global.h5", out, 3, query_list=["a.jpg"], db_list=["a.jpg"])
    # a score threshold that keeps nothing is the user's choice: an empty file, as before
    assert pairs_from_retrieval.main(tmp_path / "global.h5", out, 3, query_list=["a.jpg"], min_score=2.0) == []
    out.unlink()

    empty = tmp_path / "empty_model"
    empty.mkdir()
    pycolmap.Reconstruction().write(empty)
    for stage in (pairs_from_covisibility, pairs_from_poses):
        with pytest.raises(InputError, match=r"empty_model: 0 registered images; pairs need at least two"):
            stage.main(empty, out, 3)
    assert not out.exists()


# --- 5. counts below 1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [-3, 0])
def test_counts_below_one_are_refused(tmp_path, model, count):
    names = [f"{i}.jpg" for i in range(12)]
    write_descriptors(tmp_path / "global.h5", names)
    out = tmp_path / "pairs.txt"
    with pytest.raises(InputError, match=rf"num_matched must be at least 1, got {count}"):
        pairs_from_retrieval.main(tmp_path / "global.h5", out, count)
    for stage in (pairs_from_covisibility, pairs_from_poses):
        with pytest.raises(InputError, match=rf"num_matched must be at least 1, got {count}"):
            stage.main(model, out, count)
    with pytest.raises(InputError, match=rf"window_size must be at least 1, got {count}"):
        pairs_from_sequential.main(out, image_list=names, window_size=count)
    with pytest.raises(InputError, match=rf"num_loop_closures must be at least 1, got {count}"):
        pairs_from_sequential.main(
            out, image_list=names, loop_descriptors=tmp_path / "global.h5", num_loop_closures=count
        )
    argv = ["--descriptors", str(tmp_path / "global.h5"), "--output", str(out), "--num_matched", str(count)]
    with pytest.raises(SystemExit, match=rf"^error: num_matched must be at least 1, got {count}$"):
        pairs_from_retrieval.command(argv)
    assert not out.exists()


# --- 6. descriptor files of the wrong kind ---------------------------------------------------------------


def test_wrong_kind_of_descriptors_file_is_named(tmp_path):
    names = ["a.jpg", "b.jpg", "c.jpg"]
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        for name in names:
            write_features(f, name, np.zeros((2, 2)), [1, 1], (8, 8))
    Codebook(np.eye(4, dtype=np.float32), {"name": "vlad"}).write(tmp_path / "global-codebook.h5")
    out = tmp_path / "pairs.txt"
    expected = "not global descriptors (global_descriptor per image): give extract_global's output"
    for path, kind in (("feats.h5", "a features file (keypoints per image)"), ("global-codebook.h5", "a codebook")):
        match = rf"{path}: {re.escape(kind)}.*, {re.escape(expected)}"
        with pytest.raises(InputError, match=match):
            pairs_from_retrieval.main(tmp_path / path, out, 2)
        write_descriptors(tmp_path / "global.h5", names)
        with pytest.raises(InputError, match=match):
            pairs_from_retrieval.main(tmp_path / "global.h5", out, 2, db_descriptors=tmp_path / path)
        with pytest.raises(InputError, match=match):
            pairs_from_sequential.main(out, image_list=names, loop_descriptors=tmp_path / path)
    assert not out.exists()


def test_non_finite_global_descriptor_is_named(tmp_path):
    names = ["a.jpg", "b.jpg", "c.jpg"]
    write_descriptors(tmp_path / "global.h5", names)
    with h5py.File(tmp_path / "global.h5", "a") as f:
        f["b.jpg/global_descriptor"][0] = np.nan
    with pytest.raises(InputError, match=r"global.h5: non-finite global descriptor for image 'b.jpg'"):
        pairs_from_retrieval.main(tmp_path / "global.h5", tmp_path / "pairs.txt", 2)
