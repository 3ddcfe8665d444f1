"""hloc file formats: pair keys, features/matches/global-descriptor HDF5, crash-safe HDF5 writes."""

import h5py
import numpy as np
import pytest

from sfm_reweight.io import (
    KeypointReader,
    atomic_h5,
    has_pair,
    list_h5_names,
    names_to_pair,
    names_to_pair_old,
    output_paths,
    read_global_descriptors,
    read_image_size,
    read_keypoints,
    read_matches,
    write_features,
    write_global_descriptor,
    write_matches,
)
from sfm_reweight.utils.atomic import leftovers
from sfm_reweight.utils.errors import InputError


def test_pair_keys():
    assert names_to_pair("db/1.jpg", "query/a/2.jpg") == "db-1.jpg/query-a-2.jpg"
    assert names_to_pair_old("db/1.jpg", "q.jpg") == "db-1.jpg_q.jpg"


def test_features_roundtrip_and_legacy_dtypes(tmp_path):
    path = tmp_path / "feats.h5"
    kps = np.array([[1500.3, 2.25], [0, 0]], np.float32)
    with h5py.File(path, "w") as f:
        write_features(f, "db/1.jpg", kps, [0.5, 1.0], (2000, 1000))
        write_features(f, "q.jpg", kps[:1], [1.0], (10, 20), descriptors=np.zeros((128, 1), np.uint8))
        f.create_group("half.jpg").create_dataset("keypoints", data=kps.astype(np.float16))  # hloc's as_half
    assert list_h5_names(path) == ["db/1.jpg", "half.jpg", "q.jpg"]
    out = read_keypoints(path, "db/1.jpg")
    assert out.dtype == np.float32 and np.array_equal(out, kps)  # float32: 1500.3 survives
    assert read_keypoints(path, "half.jpg").dtype == np.float32
    assert read_keypoints(path, "half.jpg")[0, 0] == 1500.0  # what float16 keeps
    assert tuple(read_image_size(path, "db/1.jpg")) == (2000, 1000)
    assert read_image_size(path, "half.jpg") is None
    with h5py.File(path, "r") as f:
        assert f["db/1.jpg/keypoints"].dtype == np.float32 and f["q.jpg/descriptors"].shape == (128, 1)
    with pytest.raises(KeyError, match="no keypoints for image 'x.jpg'"):
        read_keypoints(path, "x.jpg")


def test_matches_all_key_forms(tmp_path):
    path = tmp_path / "matches.h5"
    with h5py.File(path, "w") as f:
        write_matches(f, "db/1.jpg", "q/2.jpg", np.array([2, -1, 0]), np.array([0.9, 0, 0.4]))
        legacy = f.create_group(names_to_pair_old("a.jpg", "b.jpg"))
        legacy.create_dataset("matches0", data=np.array([-1, 1], np.int32))
        short16 = f.create_group(names_to_pair("c.jpg", "d.jpg"))
        big = 40000  # hloc's match_features stores int16: indices above 32767 wrap around
        short16.create_dataset("matches0", data=np.array([big, -1, 5], np.int64).astype(np.int16))
        short16.create_dataset("matching_scores0", data=np.array([0.5, 0, 0.25], np.float16))
    with h5py.File(path, "r") as f:
        assert f["db-1.jpg/q-2.jpg/matches0"].dtype == np.int32
        assert has_pair(f, "q/2.jpg", "db/1.jpg") and not has_pair(f, "a.jpg", "c.jpg")

    m, s = read_matches(path, "db/1.jpg", "q/2.jpg")
    assert m.tolist() == [[0, 2], [2, 0]] and np.allclose(s, [0.9, 0.4])
    m, s = read_matches(path, "q/2.jpg", "db/1.jpg")  # reversed key: columns flipped
    assert m.tolist() == [[2, 0], [0, 2]]
    m, s = read_matches(path, "b.jpg", "a.jpg")  # legacy key, reversed, no scores
    assert m.tolist() == [[1, 1]] and s.tolist() == [1.0]
    m, s = read_matches(path, "c.jpg", "d.jpg")  # int16, shorter than N0
    assert m.tolist() == [[0, big], [2, 5]] and s.dtype == np.float32
    with pytest.raises(KeyError, match="no matches for the pair"):
        read_matches(path, "a.jpg", "d.jpg")


def test_global_descriptors(tmp_path):
    path = tmp_path / "global.h5"
    with h5py.File(path, "w") as f:
        write_global_descriptor(f, "a.jpg", [1, 0])
        f.create_group("b.jpg").create_dataset("global_descriptor", data=np.array([0, 1], np.float16))
    assert read_global_descriptors(path, ["b.jpg", "a.jpg"]).tolist() == [[0, 1], [1, 0]]


def test_atomic_h5_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "f.h5"
    with atomic_h5(path) as f:
        f["x"] = [1]
    with pytest.raises(RuntimeError):
        with atomic_h5(path) as f:
            assert f["x"][0] == 1  # a copy of the existing file
            f["y"] = [2]
            raise RuntimeError("killed")
    with h5py.File(path, "r") as f:
        assert list(f) == ["x"]
    assert leftovers(path) == []
    (tmp_path / ".f.h5.0123abcd.tmp").write_bytes(b"debris of a killed run")
    assert len(leftovers(path)) == 1
    with atomic_h5(path, copy_existing=False) as f:
        f["z"] = [3]
    with h5py.File(path, "r") as f:
        assert list(f) == ["z"]
    assert leftovers(path) == []  # the debris is gone


def test_keypoint_reader_and_output_paths(tmp_path):
    for name, value in (("a.h5", 1), ("b.h5", 2)):
        with h5py.File(tmp_path / name, "w") as f:
            write_features(f, "x.jpg", [[value, value]], [1], (4, 4))
            write_features(f, f"only-{name}.jpg", [[0, 0]], [1], (4, 4))
    with KeypointReader([tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "absent.h5"]) as reader:
        assert reader("x.jpg").tolist() == [[1, 1]]  # the first file wins
        assert "only-b.h5.jpg" in reader and "y.jpg" not in reader
    assert output_paths("m", tmp_path / "p.txt", tmp_path, None, None) == (tmp_path / "feats_m.h5", tmp_path / "m_p.h5")
    with pytest.raises(InputError):
        output_paths("m", tmp_path / "p.txt", None, tmp_path / "f.h5", None)


def test_a_corrupt_hdf5_file_is_named_with_the_way_out(tmp_path):
    from sfm_reweight.io import KeypointReader, list_h5_names
    from sfm_reweight.utils.errors import InputError

    broken = tmp_path / "feats.h5"
    broken.write_bytes(b"\x89HDF\r\n truncated")
    with pytest.raises(InputError, match=r"feats.h5: not a readable HDF5 file .*delete it or rerun with --overwrite"):
        list_h5_names(broken)
    with pytest.raises(InputError, match="feats.h5: not a readable HDF5 file"):
        KeypointReader([broken])
