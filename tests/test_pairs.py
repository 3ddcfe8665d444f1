"""Pairs from exhaustive, sequential (+ loop closures), retrieval, covisibility and poses."""

import itertools

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
from sfm_reweight.io import write_features, write_global_descriptor
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs


def write_descriptors(path, descriptors: dict) -> None:
    with h5py.File(path, "w") as f:
        for name, d in descriptors.items():
            write_global_descriptor(f, name, np.asarray(d, np.float32) / np.linalg.norm(d))


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[pycolmap.Reconstruction, str]:
    """A synthetic model of 8 images whose 3D points are each seen by a random subset of images."""
    options = pycolmap.SyntheticDatasetOptions(
        num_rigs=1,
        num_cameras_per_rig=1,
        num_frames_per_rig=8,
        num_points3D=80,
        num_points2D_without_point3D=0,
    )
    pycolmap.set_random_seed(0)
    rec = pycolmap.synthesize_dataset(options)
    rng = np.random.default_rng(0)
    for point_id in list(rec.points3D):
        elements = [(e.image_id, e.point2D_idx) for e in rec.points3D[point_id].track.elements]
        if len(elements) < 3:
            continue
        keep = rng.choice(len(elements), size=rng.integers(2, len(elements) + 1), replace=False)
        for i in sorted(set(range(len(elements))) - set(keep.tolist())):
            rec.delete_observation(*elements[i])
    path = tmp_path_factory.mktemp("model")
    rec.write(path)
    return rec, str(path)


def test_exhaustive(tmp_path):
    out = tmp_path / "pairs.txt"
    assert pairs_from_exhaustive.main(out, image_list=["a", "b", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]
    assert read_pairs(out) == [("a", "b"), ("a", "c"), ("b", "c")]
    pairs = pairs_from_exhaustive.main(out, image_list=["q1", "r1"], ref_list=["r1", "r2"])
    assert pairs == [("q1", "r1"), ("q1", "r2"), ("r1", "r2")]
    with h5py.File(tmp_path / "feats.h5", "w") as f:
        for name in ("db/x.jpg", "db/y.jpg"):
            write_features(f, name, np.zeros((1, 2)), [1], (4, 4))
    assert pairs_from_exhaustive.main(out, features=tmp_path / "feats.h5") == [("db/x.jpg", "db/y.jpg")]
    with pytest.raises(InputError):
        pairs_from_exhaustive.main(out, image_list=[])


def test_sequential_window_and_loop_closures(tmp_path):
    names = [f"f{i:02d}.jpg" for i in range(10)]
    out = tmp_path / "pairs.txt"
    pairs = pairs_from_sequential.main(out, image_list=names[::-1][::-1], window_size=2)
    expected = [(names[i], names[j]) for i in range(10) for j in range(i + 1, min(i + 3, 10))]
    assert pairs == expected and read_pairs(out) == expected

    # Frames 0 and 9 (and 1 and 8) look alike: a loop; others are distinct.
    rng = np.random.default_rng(0)
    base = {n: rng.normal(size=128) for n in names}
    base[names[9]] = base[names[0]] + 0.01
    base[names[8]] = base[names[1]] + 0.01
    write_descriptors(tmp_path / "global.h5", base)
    pairs = pairs_from_sequential.main(
        out,
        image_list=names,
        window_size=2,
        loop_descriptors=tmp_path / "global.h5",
        num_loop_closures=1,
        loop_min_score=0.5,
    )
    loops = pairs[len(expected) :]
    assert pairs[: len(expected)] == expected
    assert set(loops) == {(names[0], names[9]), (names[1], names[8])}
    assert all(abs(names.index(a) - names.index(b)) > 2 for a, b in loops)


def test_retrieval(tmp_path, model):
    rng = np.random.default_rng(1)
    db = {f"db/{i}.jpg": rng.normal(size=8) for i in range(6)}
    queries = {"query/a.jpg": db["db/3.jpg"] + 0.05, "query/b.jpg": db["db/1.jpg"] + 0.05}
    write_descriptors(tmp_path / "global.h5", {**db, **queries})
    out = tmp_path / "pairs.txt"
    pairs = pairs_from_retrieval.main(tmp_path / "global.h5", out, 2, query_prefix="query/", db_prefix="db/")
    assert [p[0] for p in pairs] == ["query/a.jpg"] * 2 + ["query/b.jpg"] * 2
    assert pairs[0] == ("query/a.jpg", "db/3.jpg") and pairs[2] == ("query/b.jpg", "db/1.jpg")
    # the full similarity ranking, from the stored descriptors
    with h5py.File(tmp_path / "global.h5") as f:
        d = {n: f[n]["global_descriptor"][()] for n in [*db, "query/a.jpg"]}
    ranking = sorted(db, key=lambda n: -d[n] @ d["query/a.jpg"])
    assert [p[1] for p in pairs[:2]] == ranking[:2]

    # self-pairs are never made when queries and database overlap
    pairs = pairs_from_retrieval.main(tmp_path / "global.h5", out, 3, query_list=["db/0.jpg"], db_prefix=["db/"])
    assert len(pairs) == 3 and ("db/0.jpg", "db/0.jpg") not in pairs

    # database images from a COLMAP model, descriptors in a second file
    rec, path = model
    names = sorted(im.name for im in rec.images.values())
    write_descriptors(tmp_path / "db.h5", {n: rng.normal(size=8) for n in names})
    pairs = pairs_from_retrieval.main(
        tmp_path / "global.h5", out, 3, query_prefix="query/", db_model=path, db_descriptors=tmp_path / "db.h5"
    )
    assert len(pairs) == 6 and {p[1] for p in pairs} <= set(names)
    with pytest.raises(InputError, match="no global descriptor"):
        pairs_from_retrieval.main(tmp_path / "global.h5", out, 3, query_list=["nope.jpg"])


def test_covisibility_against_brute_force(tmp_path, model):
    rec, path = model
    seen = {im.name: {p.point3D_id for p in im.points2D if p.has_point3D()} for im in rec.images.values()}
    pairs = pairs_from_covisibility.main(path, tmp_path / "pairs.txt", num_matched=3)
    for name in sorted(seen, key=lambda n: rec.find_image_with_name(n).image_id):
        mine = [b for a, b in pairs if a == name]
        counts = {other: len(seen[name] & seen[other]) for other in seen if other != name}
        assert sum(c > 0 for c in counts.values()) >= 3  # the model is covisible: the ranking is tested
        assert len(mine) == min(3, sum(c > 0 for c in counts.values()))
        ranked = sorted(counts.values(), reverse=True)
        assert [counts[m] for m in mine] == ranked[: len(mine)]


def test_poses_against_brute_force(tmp_path, model):
    rec, path = model
    images = [rec.images[i] for i in sorted(rec.reg_image_ids())]
    pairs = pairs_from_poses.main(path, tmp_path / "pairs.txt", num_matched=2, rotation_threshold=45)
    for a in images:
        candidates = [
            b
            for b in images
            if b.name != a.name
            and np.degrees(np.arccos(np.clip(a.viewing_direction() @ b.viewing_direction(), -1, 1))) < 45
        ]
        candidates.sort(key=lambda b: np.linalg.norm(a.projection_center() - b.projection_center()))
        assert [p[1] for p in pairs if p[0] == a.name] == [b.name for b in candidates[:2]]
    assert len(pairs) == len(set(pairs))
    assert all(a != b for a, b in itertools.chain(pairs))
