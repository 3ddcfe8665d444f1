"""The package's shared helpers: pairs and image-list text files, crash-safe writes, error types."""

import os

import pytest

from sfm_reweight.utils import atomic
from sfm_reweight.utils.atomic import atomic_path, leftovers
from sfm_reweight.utils.errors import InputError, MissingEntryError, SfmReweightError
from sfm_reweight.utils.pairs import collect_image_names, list_images, read_pairs, unique_pairs, write_pairs


def test_read_pairs_skips_comments_and_checks_names(tmp_path):
    (tmp_path / "images" / "db").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "db/c.png"):
        (tmp_path / "images" / name).write_bytes(b"x")
    path = tmp_path / "pairs.txt"
    path.write_text("# header\na.jpg b.jpg\n\n  db/c.png   a.jpg  \nb.jpg a.jpg")  # no trailing newline
    assert read_pairs(path, image_dir=tmp_path / "images") == [
        ("a.jpg", "b.jpg"),
        ("db/c.png", "a.jpg"),
        ("b.jpg", "a.jpg"),
    ]

    path.write_text("a.jpg b.jpg\nb.jpg missing.jpg\n")
    with pytest.raises(InputError, match=r"pairs.txt:2: image 'missing.jpg' not found in"):
        read_pairs(path, image_dir=tmp_path / "images")
    with pytest.raises(InputError, match=r"pairs.txt:2: unknown image 'missing.jpg'"):
        read_pairs(path, known_names=["a.jpg", "b.jpg"])
    path.write_text("a.jpg b.jpg\na.jpg b.jpg c.jpg\n")
    with pytest.raises(InputError, match=r"pairs.txt:2: expected 'name0 name1'"):
        read_pairs(path)
    path.write_text("# nothing\n")
    with pytest.raises(InputError, match="no pairs"):
        read_pairs(path)
    assert read_pairs(path, allow_empty=True) == []
    with pytest.raises(InputError, match="not found"):
        read_pairs(tmp_path / "absent.txt")


def test_pairs_roundtrip_and_unique(tmp_path):
    pairs = [("a", "b"), ("b", "a"), ("a", "a"), ("a", "c"), ("a", "b")]
    assert unique_pairs(pairs) == [("a", "b"), ("a", "c")]
    write_pairs(tmp_path / "out" / "pairs.txt", pairs)
    assert read_pairs(tmp_path / "out" / "pairs.txt") == pairs
    assert leftovers(tmp_path / "out" / "pairs.txt") == []


def test_image_names(tmp_path):
    (tmp_path / "img" / "sub").mkdir(parents=True)
    (tmp_path / "img" / ".cache").mkdir()
    for name in ("b.JPG", "a.png", "sub/c.jpeg", "notes.txt", "._b.JPG", ".cache/d.png"):
        (tmp_path / "img" / name).write_bytes(b"x")
    assert list_images(tmp_path / "img") == ["a.png", "b.JPG", "sub/c.jpeg"]
    (tmp_path / "list.txt").write_text("x.jpg SIMPLE_RADIAL 10 10 1 5 5 0\n# c\ny.jpg\n")
    assert collect_image_names(tmp_path / "list.txt") == ["x.jpg", "y.jpg"]
    assert collect_image_names(["q"], image_dir=tmp_path / "img") == ["q"]
    assert collect_image_names(image_dir=tmp_path / "img") == ["a.png", "b.JPG", "sub/c.jpeg"]
    with pytest.raises(InputError):
        list_images(tmp_path / "nope")


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "new" / "a.txt"
    assert atomic.write_text(path, "one") == path and path.read_text() == "one"  # the folder is made
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            assert tmp.parent == path.parent and tmp.name.startswith(".a.txt.") and tmp.name.endswith(".tmp")
            assert not tmp.exists()
            tmp.write_text("half of tw")
            raise RuntimeError("killed")
    assert path.read_text() == "one" and leftovers(path) == []
    atomic.write_bytes(path, b"two")
    assert path.read_bytes() == b"two" and os.listdir(path.parent) == ["a.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual permissions, not a temp file's 0600


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle")


def test_torch_save_is_crash_safe(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "ckpt.pt"
    atomic.torch_save({"x": torch.ones(2)}, path)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic.torch_save({"x": torch.zeros(2), "y": Unpicklable()}, path)  # the previous file stays
    assert torch.load(path)["x"].tolist() == [1.0, 1.0] and leftovers(path) == []


def test_error_types_share_one_base():
    assert issubclass(InputError, ValueError) and issubclass(MissingEntryError, KeyError)
    assert str(MissingEntryError("f.h5: no keypoints for image 'x'")) == "f.h5: no keypoints for image 'x'"
    from sfm_reweight.ground_truth import DatasetFormatError
    from sfm_reweight.matchers import MatcherUnavailable
    from sfm_reweight.image_io import ImageReadError
    from sfm_reweight.model.weights import CheckpointError

    for error in (
        InputError,
        MissingEntryError,
        ImageReadError,
        CheckpointError,
        DatasetFormatError,
        MatcherUnavailable,
    ):
        assert issubclass(error, SfmReweightError), error
