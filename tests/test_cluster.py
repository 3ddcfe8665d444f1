"""match_dense and extract_global on a Ray cluster started here (a head without CPUs and two worker
nodes of one CPU each): the same files as one process; a worker killed mid-run costs only its
chunk; errors of the work and of the cluster end the run in one line."""

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import h5py
import pytest
import torch

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import test_match_dense as md  # noqa: E402
from sfm_reweight import extract_global, match_dense  # noqa: E402
from sfm_reweight.image_io import write_image_atomic  # noqa: E402
from sfm_reweight.scenes.sample_data import sample_photo  # noqa: E402
from sfm_reweight.io import list_h5_names  # noqa: E402
from sfm_reweight.utils.cluster import ClusterError  # noqa: E402
from sfm_reweight.utils.errors import InputError  # noqa: E402
from sfm_reweight.utils.pairs import write_pairs  # noqa: E402

# the stubs live in test modules the workers cannot import: they travel by value
ray.cloudpickle.register_pickle_by_value(md)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def cluster():
    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        nodes.add_node(num_cpus=1)
    yield nodes.address
    nodes.shutdown()


@pytest.fixture
def one_thread():
    """Torch with one thread here, as on every one-CPU worker: then the floating-point sums agree bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def photo_views(image_dir: Path, count: int) -> list[str]:
    """Overlapping 240x180 crops of the sample photo."""
    photo = cv2.resize(sample_photo(), (320, 240), interpolation=cv2.INTER_AREA)
    names = [f"v{i}.png" for i in range(count)]
    for i, name in enumerate(names):
        write_image_atomic(image_dir / name, photo[6 * i : 6 * i + 180, 14 * i : 14 * i + 240])
    return names


def test_cluster_writes_the_files_of_one_process(cluster, one_thread, tmp_path):
    names = photo_views(tmp_path / "images", 4)
    write_pairs(tmp_path / "pairs.txt", md.all_pairs(names))
    conf = {"name": "eloftr_reweight", "preprocessing": {"resize_max": 240}, "chunk_size": 2}
    alone = match_dense.main(conf, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "alone")
    spread = match_dense.main(
        {**conf, "cluster": {"address": cluster}}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "cluster"
    )
    for a, b in zip(alone, spread):
        md.assert_same_files(a, b)
    with h5py.File(spread[1]) as f:
        assert (f["v0.png/v1.png/matches0"][()] >= 0).sum() > 50  # real matches, not two empty files


class LoggingStub(md.StubMatcher):
    """The known-scene stub, noting every pair it has matched and the process that matched it in a
    file (the workers are processes)."""

    def __init__(self, log: Path, sleep: float):
        super().__init__(sleep)
        self.log = log

    def match_pairs(self, pairs, batch_size=1):
        for out in super().match_pairs(pairs, batch_size):
            with open(self.log, "a") as f:
                f.write("%d %d %d\n" % (*self.calls[-1], os.getpid()))
            yield out


@pytest.mark.parametrize("workers", [2, 1])
def test_a_killed_worker_costs_only_its_chunk(cluster, tmp_path, caplog, workers):
    """One of two workers, or the only one (then the run waits for Ray to restart it), is killed."""
    names = md.make_images(tmp_path / "images", 5)
    write_pairs(tmp_path / "pairs.txt", md.all_pairs(names))
    log = tmp_path / "matched.txt"
    conf = {"name": "eloftr_reweight_lite", "chunk_size": 2, "cluster": {"address": cluster, "workers": workers}}
    raw = tmp_path / "cluster" / "matches-eloftr-reweight-lite_pairs.raw"
    errors = []

    def run():
        try:
            match_dense.main(
                conf, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "cluster", matcher=LoggingStub(log, 0.4)
            )
        except Exception as err:  # noqa: BLE001 -- re-raised in the test's thread below
            errors.append(err)

    thread = threading.Thread(target=run)
    killed = None
    with caplog.at_level(logging.WARNING):
        thread.start()
        deadline = time.time() + 120
        while killed is None and thread.is_alive() and time.time() < deadline:
            if list(raw.glob("shard-*.h5")) and log.exists():
                killed = int(log.read_text().split()[-1])  # a worker of this run, busy with its next pair
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        thread.join(300)
    assert not errors, errors
    assert killed is not None, "no worker was busy to be killed"
    assert not thread.is_alive()
    assert sum("a worker died running chunk" in r.getMessage() for r in caplog.records) == 1
    matched = [line.rsplit(" ", 1)[0] for line in log.read_text().splitlines()]
    assert len(set(matched)) == 10 and len(matched) <= 10 + 2  # at most the killed chunk was matched twice
    md.run_stub(str(tmp_path / "images"), str(tmp_path / "pairs.txt"), str(tmp_path / "alone"), 0.0)
    for name in ("feats_matches-eloftr-reweight-lite.h5", "matches-eloftr-reweight-lite_pairs.h5"):
        md.assert_same_files(tmp_path / "cluster" / name, tmp_path / "alone" / name)


def test_an_error_of_the_work_ends_the_run_with_it(cluster, tmp_path):
    names = md.make_images(tmp_path / "images", 3)
    write_pairs(tmp_path / "pairs.txt", md.all_pairs(names))
    conf = {"name": "eloftr_reweight_lite", "cluster": {"address": cluster}}
    stub = md.StubMatcher()
    stub.match_pairs = None  # not callable: the worker's TypeError comes back as it is
    with pytest.raises(TypeError):
        match_dense.main(conf, tmp_path / "pairs.txt", tmp_path / "images", tmp_path / "out", matcher=stub)
    assert not list((tmp_path / "out").glob("*.h5"))


def test_cluster_errors_are_one_line(cluster, tmp_path):
    names = md.make_images(tmp_path / "images", 3)
    write_pairs(tmp_path / "pairs.txt", md.all_pairs(names))
    with pytest.raises(
        ClusterError, match=r"^cannot connect to the Ray cluster at '127.0.0.1:1': .*refused"
    ) as unreachable:
        match_dense.main(
            {"name": "eloftr_reweight_lite", "cluster": {"address": "127.0.0.1:1"}},
            tmp_path / "pairs.txt",
            tmp_path / "images",
            tmp_path / "out",
            matcher=md.StubMatcher(),
        )
    with pytest.raises(ClusterError, match=r"room for 2 workers of 1 CPUs and 0 GPUs, not 3") as no_room:
        match_dense.main(
            {"name": "eloftr_reweight_lite", "cluster": {"address": cluster, "workers": 3}},
            tmp_path / "pairs.txt",
            tmp_path / "images",
            tmp_path / "out",
            matcher=md.StubMatcher(),
        )
    assert "\n" not in str(unreachable.value) and "\n" not in str(no_room.value)


def test_extract_global_on_the_cluster(cluster, one_thread, tmp_path):
    names = photo_views(tmp_path / "images", 6)
    conf = {
        "name": "vlad_xfeat",
        "num_clusters": 4,
        "kmeans_iterations": 5,
        "local": {"resize_max": 240},
        "chunk_size": 2,
    }
    alone = extract_global.main(conf, tmp_path / "images", tmp_path / "alone")
    spread = extract_global.main({**conf, "cluster": {"address": cluster}}, tmp_path / "images", tmp_path / "cluster")
    md.assert_same_files(alone, spread)
    md.assert_same_files(extract_global.codebook_path(alone), extract_global.codebook_path(spread))
    assert sorted(list_h5_names(spread)) == names


def test_a_worker_without_the_image_folder_names_it(tmp_path):
    with pytest.raises(
        InputError, match="elsewhere: no such folder on .*; cluster workers read images from the driver's path"
    ):
        match_dense.PairChunks(md.StubMatcher, tmp_path / "elsewhere", set(), None, None)


def test_sift_is_not_sent_to_a_cluster(tmp_path):
    names = md.make_images(tmp_path / "images", 2)
    write_pairs(tmp_path / "pairs.txt", md.all_pairs(names))
    with pytest.raises(InputError, match="conf 'sift' extracts keypoints here; a cluster is for dense matchers"):
        match_dense.main(
            {"name": "sift", "cluster": {"address": "local"}}, tmp_path / "pairs.txt", tmp_path / "images", tmp_path
        )
