"""Global descriptors (VLAD of XFeat and RootSIFT descriptors) into hloc's file, read by
pairs_from_retrieval; resume, configuration checks, codebook reuse, unreadable images; and hloc's
own descriptor and pairs files read as they are."""

import logging
import shutil

import cv2
import h5py
import numpy as np
import pytest

from sfm_reweight import extract_global, pairs_from_retrieval
from sfm_reweight.image_io import write_image_atomic
from sfm_reweight.io import list_h5_names, read_global_descriptors
from sfm_reweight.scenes.demo_scene import bricks, planks
from sfm_reweight.scenes.sample_data import sample_photo
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import read_pairs

VIEWS, SIZE = 4, 256
# small and fast: few words, one small chunk so that commits happen mid-run
CONF = {
    "name": "vlad_xfeat",
    "num_clusters": 16,
    "kmeans_iterations": 10,
    "local": {"resize_max": 320},
    "chunk_size": 5,
}


def write_scenes(root) -> list[str]:
    """Three distinct "scenes" (a photo, brickwork, wooden planks), each seen in VIEWS views (random
    mild homographies, SIZE px): `<scene>/<k>.jpg` under `root`; returns the names. Brickwork and a
    plastered facade (grey, regular) told apart by less than 0.02 of cosine similarity: the scenes
    are chosen so that every view's own scene leads by more than 0.25 under seeds 0-2."""
    rng = np.random.default_rng(0)
    sources = {
        "photo": cv2.resize(sample_photo(), (400, 400), interpolation=cv2.INTER_AREA),
        "bricks": (bricks(rng, 400, 400) * 255).astype(np.uint8),
        "planks": (planks(rng, 400) * 255).astype(np.uint8),
    }
    corners = np.float32([[40, 40], [360, 40], [360, 360], [40, 360]])
    target = np.float32([[0, 0], [SIZE - 1, 0], [SIZE - 1, SIZE - 1], [0, SIZE - 1]])
    names = []
    for scene, image in sources.items():
        for k in range(VIEWS):
            H = cv2.getPerspectiveTransform(corners + rng.uniform(-25, 25, (4, 2)).astype(np.float32), target)
            write_image_atomic(root / scene / f"{k}.jpg", cv2.warpPerspective(image, H, (SIZE, SIZE)))
            names.append(f"{scene}/{k}.jpg")
    return sorted(names)


def scene_of(name: str) -> str:
    return name.split("/")[0]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    return root, write_scenes(root)


@pytest.fixture(scope="module")
def indexed(scenes, tmp_path_factory):
    """The scenes described with CONF into an export folder: (descriptors path, names)."""
    image_dir, names = scenes
    return extract_global.main(CONF, image_dir, tmp_path_factory.mktemp("export")), names


def own_scene_lead(descriptors: np.ndarray, names: list[str]) -> np.ndarray:
    """Per image [N]: its best cosine similarity to another view of its scene minus its best to any
    view of another scene (positive: retrieval finds its own scene first)."""
    similarity = descriptors @ descriptors.T
    scenes = np.array([scene_of(n) for n in names])
    same = scenes[:, None] == scenes[None]
    np.fill_diagonal(similarity, -np.inf)
    return np.where(same, similarity, -np.inf).max(1) - np.where(same, -np.inf, similarity).max(1)


def top1(descriptors, names, tmp_path) -> dict[str, str]:
    pairs = pairs_from_retrieval.main(descriptors, tmp_path / "pairs.txt", 1)
    assert [q for q, _ in pairs] == names
    return dict(pairs)


@pytest.mark.parametrize("conf", ["vlad_xfeat", "vlad_rootsift"])
def test_descriptors_retrieve_own_scene(conf, scenes, tmp_path):
    image_dir, names = scenes
    small = {"name": conf, "num_clusters": 16, "kmeans_iterations": 10, "local": {"resize_max": 320}}
    path = extract_global.main(small, image_dir, tmp_path)
    assert path == tmp_path / f"global-feats-{extract_global.confs[conf]['output']}.h5"
    # the codebook lives beside the file, not in it (a root dataset would read as an image)
    assert extract_global.codebook_path(path).is_file() and list_h5_names(path) == names
    descriptors = read_global_descriptors(path, names)
    local_dim = {"vlad_xfeat": 64, "vlad_rootsift": 128}[conf]
    assert descriptors.shape == (len(names), 16 * local_dim) and descriptors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-5)
    assert own_scene_lead(descriptors, names).min() > 0.1  # with margin: no tie decides it
    assert all(scene_of(q) == scene_of(db) for q, db in top1(path, names, tmp_path).items())


def test_pca_whitening(scenes, tmp_path):
    # mechanics only: whitening learned on a dozen images does not retrieve better (nor on the real pool)
    image_dir, names = scenes
    with pytest.raises(InputError, match="pca_dim 8 needs at least 32 codebook images, got 12"):
        extract_global.main({**CONF, "pca_dim": 8}, image_dir, tmp_path)
    path = extract_global.main({**CONF, "pca_dim": 3}, image_dir, tmp_path, overwrite=True)
    descriptors = read_global_descriptors(path, names)
    assert descriptors.shape == (len(names), 3)
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-5)


def record_described(monkeypatch) -> list[str]:
    """The names every later `DescribeImages` call is given, in order."""
    described = []
    real = extract_global.DescribeImages.__call__

    def call(self, chunk, progress=None):
        described.extend(name for _, name in chunk)
        return real(self, chunk, progress)

    monkeypatch.setattr(extract_global.DescribeImages, "__call__", call)
    return described


def test_resume_describes_only_missing_images(indexed, scenes, tmp_path, monkeypatch):
    image_dir, names = scenes
    path = tmp_path / "global.h5"
    extract_global.main(CONF, image_dir, image_list=names[:-2], global_path=path)
    first = read_global_descriptors(path, names[:-2])
    described = record_described(monkeypatch)
    extract_global.main(CONF, image_dir, global_path=path)
    assert described == names[-2:]  # the stored codebook is reused, the done images skipped
    assert list_h5_names(path) == names
    np.testing.assert_array_equal(read_global_descriptors(path, names[:-2]), first)


def test_a_replaced_image_is_described_again(scenes, tmp_path, monkeypatch):
    image_dir, names = scenes
    images = tmp_path / "images"
    shutil.copytree(image_dir, images)
    path = extract_global.main(CONF, images, tmp_path)
    shutil.copyfile(images / names[0], images / names[-1])  # another photo under the same name
    described = record_described(monkeypatch)
    extract_global.main(CONF, images, tmp_path)
    assert described == [names[-1]]
    np.testing.assert_allclose(
        read_global_descriptors(path, names[-1:]), read_global_descriptors(path, names[:1]), atol=1e-6
    )


def test_other_conf_into_the_same_file_is_refused(indexed, scenes, tmp_path):
    path = tmp_path / "global.h5"
    for source, target in (
        (indexed[0], path),
        (extract_global.codebook_path(indexed[0]), extract_global.codebook_path(path)),
    ):
        shutil.copyfile(source, target)
    with pytest.raises(InputError, match=r"conf.num_clusters 16 -> 8.*--overwrite"):
        extract_global.main({**CONF, "num_clusters": 8}, scenes[0], global_path=path)
    # overwrite: file and codebook rebuilt from this run alone
    extract_global.main(
        {**CONF, "num_clusters": 8}, scenes[0], image_list=scenes[1][:6], global_path=path, overwrite=True
    )
    assert list_h5_names(path) == scenes[1][:6] and read_global_descriptors(path, scenes[1][:1]).shape == (1, 8 * 64)


def test_codebook_reuse_gives_the_same_descriptors(indexed, scenes, tmp_path):
    path, names = indexed
    queries = [names[0], names[7]]
    out = extract_global.main(
        CONF,
        scenes[0],
        image_list=queries,
        global_path=tmp_path / "queries.h5",
        codebook=extract_global.codebook_path(path),
    )
    np.testing.assert_allclose(read_global_descriptors(out, queries), read_global_descriptors(path, queries), atol=1e-6)
    assert not extract_global.codebook_path(out).exists()
    with pytest.raises(InputError, match="local.resize_max"):
        extract_global.main(
            {**CONF, "local": {"resize_max": 256}},
            scenes[0],
            image_list=queries,
            global_path=tmp_path / "q2.h5",
            codebook=extract_global.codebook_path(path),
        )


def test_unreadable_image_is_skipped_and_reported(scenes, tmp_path, caplog):
    image_dir, names = scenes
    for name in names:
        (tmp_path / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image_dir / name, tmp_path / "images" / name)
    (tmp_path / "images" / "photo" / "broken.jpg").write_bytes(b"not a jpeg")
    with caplog.at_level(logging.INFO):
        path = extract_global.main(CONF, tmp_path / "images", tmp_path)
    assert list_h5_names(path) == names
    assert "photo/broken.jpg" in caplog.text and "1 unreadable and skipped" in caplog.text
    assert sum("skipping an unreadable image" in r.getMessage() for r in caplog.records) == 1  # once, not per pass


def write_hloc_descriptors(path, descriptors: dict, as_half: bool) -> None:
    """As hloc's extract_features writes NetVLAD / OpenIBL / MegaLoc output: a group per name
    (nested for names with `/`), `global_descriptor` (float16 with as_half) and `image_size`."""
    with h5py.File(path, "a", libver="latest") as fd:
        for name, d in descriptors.items():
            grp = fd.create_group(name)
            grp.create_dataset("global_descriptor", data=d.astype(np.float16 if as_half else np.float32))
            grp.create_dataset("image_size", data=np.array([1024, 768]))


@pytest.mark.parametrize("as_half", [True, False])
def test_hloc_descriptor_files_are_read(tmp_path, as_half):
    rng = np.random.default_rng(0)
    db = {f"db/{i}.jpg": rng.normal(size=256) for i in range(5)}
    queries = {
        "query/day/nexus4/IMG_a.jpg": db["db/3.jpg"] + 0.1 * rng.normal(size=256),
        "query/night/nexus5x/IMG_b.jpg": db["db/1.jpg"] + 0.1 * rng.normal(size=256),
    }
    unit = {n: (d / np.linalg.norm(d)).astype(np.float32) for n, d in {**db, **queries}.items()}
    write_hloc_descriptors(tmp_path / "global-feats-netvlad.h5", unit, as_half)
    assert list_h5_names(tmp_path / "global-feats-netvlad.h5") == sorted(unit)
    pairs = pairs_from_retrieval.main(
        tmp_path / "global-feats-netvlad.h5", tmp_path / "pairs.txt", 2, query_prefix="query/", db_prefix="db/"
    )
    assert pairs[0] == ("query/day/nexus4/IMG_a.jpg", "db/3.jpg") and pairs[2] == (
        "query/night/nexus5x/IMG_b.jpg",
        "db/1.jpg",
    )
    assert read_pairs(tmp_path / "pairs.txt") == pairs


def test_hloc_shipped_pairs_file_is_read(tmp_path):
    # the style of hloc's pairs/aachen_v1.1/pairs-query-netvlad50.txt
    text = (
        "query/day/nexus4/IMG_20130210_163336.jpg db/2390.jpg\nquery/day/nexus4/IMG_20130210_163336.jpg db/4273.jpg\n"
    )
    (tmp_path / "pairs-query-netvlad50.txt").write_text(text)
    assert read_pairs(tmp_path / "pairs-query-netvlad50.txt") == [
        ("query/day/nexus4/IMG_20130210_163336.jpg", "db/2390.jpg"),
        ("query/day/nexus4/IMG_20130210_163336.jpg", "db/4273.jpg"),
    ]
