"""The inference API: `Matcher(conf, weights)(image0, image1)` -> matches in original-image pixels.

    from sfm_reweight import Matcher
    matcher = Matcher("lite")                      # shipped default weights
    out = matcher("a.jpg", "b.jpg")                # paths or arrays (gray/RGB/RGBA, uint8/uint16/float)
    out["keypoints0"], out["keypoints1"]           # [M,2] float32, pixel-centre convention
    out["confidence"], out["matchability0"]        # [M]; coarse map of image 0: cell (x, y) is centred
                                                   # on original pixel ((8x + 0.5) * sx - 0.5, ...), scale0 = (sx, sy)
    for out in matcher.match_pairs(pairs, batch_size=4): ...

Rotation and zoom search: with conf "rotations" (degrees, multiples of 90; e.g. [0, 90, 180, 270])
image 1 is matched in each of those orientations, and with conf "zooms" (e.g. [0.5, 1, 2]) at each
of those sizes relative to image 0 (a zoom z > 1 shows image 1 z times larger than plain resizing
would: image 0 is shrunk by 1/z instead, so that the search makes no image larger than
`resize_max`, or than sparse content's larger size below; z < 1 shrinks image 1). Every
combination is one forward pass; the one with the most matches consistent with a fundamental
matrix wins (`search_score`), so that a network trained on mostly upright pairs at similar scales
can match rotated and zoomed views. With conf "search_resize_max" (e.g. 512) the candidates are
ranked at that smaller long side (times sparse content's factor) and only the winner runs at
"resize_max": about a quarter of the cost per candidate. Results are in the original images'
pixels; "rotation1" and "zoom1" say which candidate won.

Sparse content (conf "content_share", the `xfeat` conf): images whose matchable content covers few
cells (objects on a black or sky background) give the coarse matching few cells to work with. A
pair whose two shares of XFeat-reliable cells (read at long side 640 with the model's own backbone)
average below content_share is matched larger than `resize_max`, by sqrt(content_share / share) and
at most "content_upscale_max", so that its content covers about as many cells as a textured
image's. Both images get the same factor: a scale difference of even 2 % between them doubles the
refinement's error on a pair that is otherwise the same view.
"""

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .image_io import read_image, to_gray_float
from .model.config import resolve_model_conf
from .model.eloftr import COARSE_STRIDE, ELoFTR
from .utils.conf import ConfError, resolve
from .utils.errors import InputError
from .utils.provenance import file_hash
from .model.weights import WEIGHTS_DIR, load_state, read_checkpoint, resolve_weights, with_saved_architecture
from .preprocessing import Prepared, prepare, resized_size, rot90_points

ImageInput = str | Path | np.ndarray
Variant = tuple[Prepared, Prepared, int, float]  # network inputs of images 0 and 1, quarter turns and zoom of image 1

_base: dict[str, Any] = {
    "model": "lite",  # a model configuration (model/config.py): a name or a dict overlaid on one
    "weights": None,  # the shipped checkpoint that weights="default" loads (sfm_reweight/weights/<name>.pt)
    "resize_max": 1024,
    "resize_force": False,
    "mixed_precision": False,
    "rotations": [0],
    "zooms": [1.0],
    "search_resize_max": None,
    "content_share": None,
    "content_upscale_max": 1.5,  # None: every image at resize_max (`content_upscale`)
}
confs: dict[str, dict[str, Any]] = {
    # coarse threshold of the lite weights: the best of five on its synthetic validation pairs (docs/training_lite.md)
    "lite": {**_base, "model": {"name": "lite", "match_coarse": {"thr": 0.02}}, "weights": "lite"},
    "full": {**_base, "model": "full"},  # no weights ship: pass an official checkpoint
    # content_share 0.75: below the share of reliable cells of textured photos, above that of objects
    # on a black background, which gain from being matched larger (docs/xfeat.md)
    "xfeat": {**_base, "model": "xfeat", "weights": "xfeat-eloftr", "content_share": 0.75},
}
# a cell holds matchable content when XFeat's reliability is above this (black backgrounds and sky: below 0.05)
CONTENT_RELIABILITY = 0.1
CONTENT_PROBE_SIDE = 640  # long side the content share is read at: a backbone pass of about a quarter of a 1024x768 one
DEFAULT_CONF = "xfeat"  # the default by the measurements in the README


def resolve_matcher_conf(conf: str | dict) -> dict:
    """A name in `confs`, or a dict overlaid on the conf it names with "name" (default `DEFAULT_CONF`),
    its "model" resolved (model/config.py)."""
    name = conf if isinstance(conf, str) else conf.get("name", DEFAULT_CONF)
    if name not in confs:
        raise ConfError(f"unknown matcher configuration {name!r}; expected one of {sorted(confs)}")
    named = {**confs[name], "model": resolve_model_conf(confs[name]["model"])}
    return resolve({name: named}, conf, name, "matcher configuration")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Matcher:
    def __init__(
        self,
        conf: str | dict = DEFAULT_CONF,
        weights: str | Path | None = "default",
        device: str | torch.device | None = None,
    ):
        """conf: a name in `confs` or a dict; its "model" is a model conf name or dict.
        weights: "default" (the conf's shipped checkpoint; InputError for a conf that ships none), a
        shipped name, a path (ours or an official EfficientLoFTR checkpoint), or None: random weights,
        only when asked for (tests, benchmarks of speed).
        """
        self.conf = resolve_matcher_conf(conf)
        bad = [r for r in self.conf["rotations"] if r % 90]
        if bad or not self.conf["rotations"]:
            raise ConfError(
                f"matcher conf rotations {self.conf['rotations']}:"
                " expected multiples of 90 degrees, e.g. [0, 90, 180, 270]"
            )
        zooms = [float(z) for z in self.conf["zooms"]]
        if not zooms or min(zooms) <= 0:
            raise ConfError(f"matcher conf zooms {self.conf['zooms']}: expected positive factors, e.g. [0.5, 1, 2]")
        if self.conf["search_resize_max"] is not None and self.conf["search_resize_max"] <= 0:
            raise ConfError(
                f"matcher conf search_resize_max {self.conf['search_resize_max']}:"
                " expected a long side in pixels or None"
            )
        share, upscale_max = self.conf["content_share"], self.conf["content_upscale_max"]
        number = (int, float)
        if (share is not None and not (isinstance(share, number) and 0 < share <= 1)) or not (
            isinstance(upscale_max, number) and upscale_max >= 1
        ):
            raise ConfError(
                f"matcher conf content_share {share}, content_upscale_max {upscale_max}:"
                " expected a share in (0, 1] or None and a factor >= 1"
            )
        turns = [int(r // 90) % 4 for r in self.conf["rotations"]]  # quarter turns counter-clockwise
        self.candidates = [(t, z) for t in turns for z in zooms]  # how image 1 is tried against image 0
        self.device = torch.device(device) if device is not None else default_device()
        model_conf = resolve_model_conf(self.conf["model"])
        if share is not None and model_conf["backbone"]["type"] != "xfeat":
            backbone = model_conf["backbone"]["type"]
            raise ConfError(
                f"matcher conf content_share needs a backbone with a reliability map (xfeat), not {backbone!r}"
            )
        self.weights = self.resolve_default(weights, self.conf["weights"], self.conf["name"])
        self.fingerprint = "random"  # what the weights are, for caches of matches (sha256 prefix)
        if self.weights is None:
            self.model = ELoFTR(model_conf)
        else:
            path = resolve_weights(self.weights)
            ckpt = read_checkpoint(path)
            # our files may have been trained with another reweighting mode (the ablation's) or hold XFeat*'s MLP
            self.model = ELoFTR(with_saved_architecture(model_conf, ckpt))
            load_state(self.model, path, ckpt)
            self.fingerprint = file_hash(path)
        self.model.eval().fuse().to(self.device)

    @staticmethod
    def resolve_default(weights: str | Path | None, shipped: str | None, name: str) -> str | Path | None:
        """ "default": the `shipped` checkpoint of conf `name`; InputError when it ships none, since
        random weights give meaningless matches that would otherwise pass for results."""
        if weights != "default":
            return weights
        if shipped is None or not (WEIGHTS_DIR / f"{shipped}.pt").is_file():
            raise InputError(f"no shipped weights for conf {name!r}: pass --weights FILE or --random_weights")
        return shipped

    def gray(self, image: ImageInput, name: str) -> np.ndarray:
        """An image (path or array) as float32 gray [H,W] in [0,1]; errors name the file or `name`."""
        if isinstance(image, (str, Path)):
            name, image = str(image), read_image(image)
        return to_gray_float(image, name)

    def network_input(
        self, gray: np.ndarray, turns: int = 0, factor: float = 1.0, resize_max: int | None = None
    ) -> Prepared:
        """The network input of a gray image turned by `turns` quarter turns counter-clockwise and
        scaled by `factor` after the usual resizing (to `resize_max`, default the conf's)."""
        resize_max = resize_max or self.conf["resize_max"]
        turned = np.ascontiguousarray(np.rot90(gray, turns))
        if factor == 1:
            return prepare(turned, resize_max, self.conf["resize_force"])
        long_side = max(resized_size(*turned.shape[::-1], resize_max, self.conf["resize_force"]))
        return prepare(turned, max(1, round(long_side * factor)), resize_force=True)

    @torch.no_grad()
    def reliable_share(self, gray: np.ndarray) -> float:
        """The share of the cells of `gray` [H,W] whose reliability is above CONTENT_RELIABILITY, at
        long side CONTENT_PROBE_SIDE."""
        probe = prepare(gray, CONTENT_PROBE_SIDE, resize_force=True)
        reliability = self.model.run_backbone(torch.from_numpy(probe.image)[None, None].to(self.device))[3][0, 0]
        return float((reliability[probe.coarse_mask().to(self.device)] > CONTENT_RELIABILITY).float().mean())

    def content_upscale(self, gray0: np.ndarray, gray1: np.ndarray) -> float:
        """How much larger than plain resizing to match the pair of gray images [H,W]:
        sqrt(content_share / share) where the mean `share` of their reliable cells is below the
        conf's content_share, at most content_upscale_max; 1 otherwise or when off."""
        target = self.conf["content_share"]
        if target is None:
            return 1.0
        share = (self.reliable_share(gray0) + self.reliable_share(gray1)) / 2
        if share >= target:
            return 1.0
        return min(self.conf["content_upscale_max"], float(np.sqrt(target / max(share, 1e-6))))

    def variants(
        self,
        gray0: np.ndarray,
        gray1: np.ndarray,
        candidates: list[tuple[int, float]],
        upscale: float,
        resize_max: int | None = None,
    ) -> Iterator[Variant]:
        """(image 0, image 1, turns, zoom) of one pair for each (turns, zoom) candidate, both images
        `upscale` times larger (`content_upscale`)."""
        for turns, zoom in candidates:
            prep0 = self.network_input(gray0, factor=upscale * min(1.0, 1 / zoom), resize_max=resize_max)
            yield prep0, self.network_input(gray1, turns, upscale * min(1.0, zoom), resize_max), turns, zoom

    def grays(self, pairs: Iterable[tuple[ImageInput, ImageInput]]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i, (image0, image1) in enumerate(pairs):
            yield self.gray(image0, f"pair {i} image0"), self.gray(image1, f"pair {i} image1")

    def __call__(self, image0: ImageInput, image1: ImageInput) -> dict[str, np.ndarray]:
        """Match one pair (paths or arrays; arrays in RGB(A) or gray order)."""
        return next(self.match_pairs([(image0, image1)]))

    def match_pairs(self, pairs: Iterable[tuple[ImageInput, ImageInput]], batch_size: int = 1) -> Iterator[dict]:
        """Match pairs lazily, in order; consecutive network inputs of the same sizes run as one
        batch of up to `batch_size` (across pairs without a search, across candidates with one)."""
        if len(self.candidates) == 1:
            inputs = (
                v
                for gray0, gray1 in self.grays(pairs)
                for v in self.variants(gray0, gray1, self.candidates, self.content_upscale(gray0, gray1))
            )
            yield from self.run_batched(inputs, batch_size)
            return
        search_size = self.conf["search_resize_max"]
        for gray0, gray1 in self.grays(pairs):
            upscale = self.content_upscale(gray0, gray1)
            tried = self.run_batched(self.variants(gray0, gray1, self.candidates, upscale, search_size), batch_size)
            best = max(tried, key=search_score)
            if search_size:
                won = [(best["rotation1"] // 90, best["zoom1"])]
                best = next(self.run_batched(self.variants(gray0, gray1, won, upscale), 1))
            yield best

    def run_batched(self, items: Iterable[Variant], batch_size: int) -> Iterator[dict]:
        batch: list[Variant] = []
        for item in items:
            if batch and (len(batch) == batch_size or self.shapes(batch[0]) != self.shapes(item)):
                yield from self.run(batch)
                batch = []
            batch.append(item)
        if batch:
            yield from self.run(batch)

    @staticmethod
    def shapes(item: Variant) -> tuple:
        return item[0].image.shape, item[1].image.shape

    @torch.no_grad()
    def run(self, batch: list[Variant]) -> list[dict]:
        def stack(k: int) -> torch.Tensor:
            return torch.from_numpy(np.stack([item[k].image for item in batch]))[:, None].to(self.device)

        masks = None
        if any(p.padded for item in batch for p in item[:2]):
            masks = [torch.stack([item[k].coarse_mask() for item in batch]).to(self.device) for k in (0, 1)]
        amp = self.conf["mixed_precision"] and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=amp):
            out = self.model(stack(0), stack(1), *(masks or (None, None)))

        results = []
        for b, (prep0, prep1, turns, zoom) in enumerate(batch):
            sel = out["batch_ids"] == b
            keypoints1 = prep1.to_original(out["keypoints1"][sel].float().cpu().numpy())
            xy1 = slice(None, None, -1 if turns % 2 else 1)  # (w, h) of the turned image -> of image 1
            result = {
                "keypoints0": prep0.to_original(out["keypoints0"][sel].float().cpu().numpy()),
                "keypoints1": rot90_points(keypoints1, -turns, prep1.original_size),
                "confidence": out["confidence"][sel].float().cpu().numpy(),
                "image_size0": np.array(prep0.original_size),
                "image_size1": np.array(prep1.original_size[xy1]),
                "scale0": prep0.scale.astype(np.float32),  # original pixels per network pixel (sx, sy)
                "scale1": prep1.scale[xy1].astype(np.float32),
                "rotation1": 90 * turns,  # degrees counter-clockwise image 1 was turned by to match
                "zoom1": zoom,  # how much larger image 1 was shown, relative to image 0, than plain resizing
            }
            for k, prep in ((0, prep0), (1, prep1)):
                m = out[f"matchability{k}"]
                h, w = prep.size[1] // COARSE_STRIDE, prep.size[0] // COARSE_STRIDE
                m = None if m is None else m[b, :h, :w].float().cpu().numpy()
                result[f"matchability{k}"] = m if m is None or k == 0 else np.ascontiguousarray(np.rot90(m, -turns))
            results.append(result)
        return results


def search_score(result: dict) -> int:
    """Matches consistent with one fundamental matrix (MAGSAC, 1.5 network pixels): what was found
    in the right orientation and zoom. Confidence alone misleads on repetitive texture (foliage,
    brick), where the shrunk inputs of a wrong zoom match confidently and inconsistently."""
    k0, k1 = result["keypoints0"], result["keypoints1"]
    if len(k0) < 8:
        return len(k0)
    threshold = 1.5 * float(max(result["scale0"].max(), result["scale1"].max()))
    _, inliers = cv2.findFundamentalMat(k0, k1, cv2.USAC_MAGSAC, threshold, 0.999, 10_000)
    return 0 if inliers is None else int(inliers.sum())
