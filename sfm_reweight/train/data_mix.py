"""The training data mix: which datasets feed a run, and the deterministic batch of each step.

A batch holds pairs of one kind (their tensors differ); the kind of step s is drawn with the mix
weights from a generator seeded by (seed, s), and so are the items of the finite datasets (with
replacement, as the official RandomConcatSampler). The infinite synthetic datasets take items
s*batch .. s*batch+batch-1. A resumed run therefore sees exactly the batches of an uninterrupted one.
"""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from .homography_pairs import HomographyPairConf, HomographyPairs
from .megadepth import MegaDepthConf, MegaDepthPairs
from .scannet import ScanNetPairs
from .synthetic_pairs import RepeatedFacadePairConf, RepeatedFacadePairs, SyntheticPairConf, SyntheticScenePairs

# the kinds made from any folder of photos: their dataset and its conf (the data section's fields of
# that kind, plus size and seed)
SYNTHETIC = {
    "homography": (HomographyPairs, HomographyPairConf),
    "synthetic": (SyntheticScenePairs, SyntheticPairConf),
    "repeated": (RepeatedFacadePairs, RepeatedFacadePairConf),
}


def used_kinds(data_conf: dict) -> dict[str, float]:
    """The kinds of pairs with a share of the steps (the mix's weights above 0), in the mix's order."""
    return {kind: weight for kind, weight in data_conf["mix"].items() if weight > 0}


def build_sources(data_conf: dict, seed_offset: int = 0) -> dict[str, Dataset]:
    """Datasets of the kinds data_conf["mix"] gives a share of the steps.

    data_conf: folder (photos for the synthetic kinds), size [w, h], seed, mix {kind: weight};
    homography / synthetic / repeated: optional fields of HomographyPairConf / SyntheticPairConf /
    RepeatedFacadePairConf;
    megadepth: {root, scene_infos: [npz...], resize}; scannet: {root, index, intrinsics}.
    """
    size, seed = tuple(data_conf["size"]), data_conf["seed"] + seed_offset
    sources: dict[str, Dataset] = {}
    for kind in used_kinds(data_conf):
        if kind in SYNTHETIC:
            pairs, pair_conf = SYNTHETIC[kind]
            sources[kind] = pairs(data_conf["folder"], pair_conf(**{**data_conf[kind], "size": size, "seed": seed}))
        elif kind == "megadepth":
            md = data_conf["megadepth"]
            conf = MegaDepthConf(resize=md.get("resize", 832))
            sources[kind] = ConcatDataset([MegaDepthPairs(md["root"], Path(p), conf) for p in md["scene_infos"]])
        elif kind == "scannet":
            sn = data_conf["scannet"]
            sources[kind] = ScanNetPairs(sn["root"], sn["index"], sn["intrinsics"])
        else:
            raise ValueError(
                f"unknown training data kind {kind!r}; expected homography, synthetic, repeated, megadepth or scannet"
            )
    return sources


def batch_items(sources: dict[str, Dataset], data_conf: dict, step: int, batch_size: int) -> tuple[str, list[dict]]:
    """The kind and the items of the batch of `step`."""
    mix = used_kinds(data_conf)
    kinds = list(mix)
    rng = np.random.default_rng([data_conf["seed"], step])
    weights = np.array([mix[k] for k in kinds], float)
    kind = kinds[0] if len(kinds) == 1 else kinds[rng.choice(len(kinds), p=weights / weights.sum())]
    source = sources[kind]
    if kind in SYNTHETIC:
        indices = [step * batch_size + k for k in range(batch_size)]
    else:
        indices = rng.integers(len(source), size=batch_size).tolist()
    return kind, [source[i] for i in indices]


def collate(items: list[dict], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.stack([item[k] for item in items]).to(device) for k in items[0]}


class StepBatches(Dataset):
    """The items of steps first .. last-1 (item k = the batch of step first + k), so that a
    DataLoader's workers prepare upcoming batches while the network trains; the batches are the
    same whatever the number of workers."""

    def __init__(self, sources: dict[str, Dataset], data_conf: dict, batch_size: int, first: int, last: int):
        self.sources, self.data_conf, self.batch_size = sources, data_conf, batch_size
        self.first, self.last = first, last

    def __len__(self) -> int:
        return max(0, self.last - self.first)

    def __getitem__(self, k: int) -> list[dict]:
        if not 0 <= k < len(self):
            raise IndexError(f"step item {k} outside 0..{len(self) - 1}")  # ends plain iteration, too
        return batch_items(self.sources, self.data_conf, self.first + k, self.batch_size)[1]


def as_is(batch: list[dict]) -> list[dict]:
    """DataLoader collate_fn that leaves a step's items alone (module level: workers pickle it)."""
    return batch
