"""Evaluation data with ground truth: readers of the benchmark layouts, each returning `EvalPair`s.

Relative pose:
    read_megadepth1500(npz_root, image_root)   LoFTR's megadepth_test_1500 scene-info npz files + images
    read_scannet1500(npz_root, image_root)     LoFTR's scannet_test_1500 test.npz + intrinsics.npz + scenes
    read_pairs_with_gt(pairs_file, image_root) lines `name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)`
    read_strecha(root, max_gap=3)              images/ + gt_dense_cameras/<image>.camera; pairs (i, i+1..i+gap)
    read_middlebury(root, gaps=(1, 2))         every *_par.txt ring below root; pairs (i, i+g) around the ring
Homography:
    read_hpatches(root)                        <seq>/1.ppm..6.ppm + H_1_k; pairs (1, k)
    read_oxford(root)                          <seq>/img1..6.<ext> + H1toNp; pairs (1, N)
    read_homography_dataset(root)              either layout, per sequence folder
(Any photos against zoomed and rotated copies of themselves, which are written first:
`warped_photos.write_warped_photos`.)

Conventions of every `EvalPair` (whatever the source uses):
- pixel coordinates have integer values at pixel centres (pixel (0, 0) covers [-0.5, 0.5]^2), the
  convention of `Matcher` keypoints. K matrices are converted to it: sources whose principal point
  puts pixel centres at +0.5 (COLMAP, hence MegaDepth) get 0.5 subtracted from cx, cy. Strecha,
  Middlebury, ScanNet and pairs files are taken as given (integer pixel centres): a check of the
  Strecha and Middlebury K (median Sampson error of SIFT inliers under principal-point shifts of
  -3..+1 px) found no shift better than 0 within its noise, so no correction is applied there.
  Homographies (Oxford, HPatches) are used as given, in the same convention.
- T_0to1 [4,4] float64 is cam1_from_cam0: X1 = R X0 + t for a point X0 in camera-0 coordinates.
- H_0to1 [3,3] float64 maps image-0 pixels to image-1 pixels.
- K refers to the image as stored unless `calibrated_size` says otherwise (ScanNet: 640x480); use
  `intrinsics_for(pair, k, size)` to get K for the stored image's real size.

A malformed input raises `DatasetFormatError` naming the file and the line.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..image_io import IMAGE_EXTENSIONS, read_image
from ..preprocessing import pixel_scaling
from ..ground_truth import (
    DatasetFormatError,
    location,
    parse_floats,
    read_lines,
    read_matrix,
    read_strecha_camera,
    require_dir,
    require_file,
)

PAIRS_GT_FIELDS = "name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)"


@dataclass(frozen=True, eq=False)
class EvalPair:
    """One image pair with its ground truth (K0, K1, T_0to1 for relative pose; H_0to1 for homography)."""

    name: str  # "<name0> <name1>", unique within a dataset
    image0: Path
    image1: Path
    K0: np.ndarray | None = None  # [3,3], integer pixel centres
    K1: np.ndarray | None = None
    T_0to1: np.ndarray | None = None  # [4,4] cam1_from_cam0
    H_0to1: np.ndarray | None = None  # [3,3] image-0 pixels -> image-1 pixels
    rotation0: int = 0  # np.rot90 turns (counter-clockwise) that make image 0 upright before matching
    rotation1: int = 0
    calibrated_size0: tuple[int, int] | None = None  # (w, h) that K0 refers to, if not the stored size
    calibrated_size1: tuple[int, int] | None = None


# ---------------------------------------------------------------------------------------------
# Geometry helpers


def relative_pose(R0: np.ndarray, t0: np.ndarray, R1: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """World-to-camera poses (X_i = R_i X + t_i) of two cameras -> T_0to1 [4,4]."""
    T = np.eye(4)
    T[:3, :3] = R1 @ R0.T
    T[:3, 3] = t1 - T[:3, :3] @ t0
    return T


def corner_to_centre(K: np.ndarray) -> np.ndarray:
    """K whose pixel centres lie at +0.5 (COLMAP) -> K for integer pixel centres (cx, cy minus 0.5)."""
    K = np.array(K, np.float64)
    K[:2, 2] -= 0.5
    return K


def scale_intrinsics(K: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """K of an image -> K of the same image resized by (sx, sy), integer pixel centres kept:
    f' = s f, c' = (c + 0.5) s - 0.5."""
    return pixel_scaling(*scale) @ np.asarray(K, np.float64)


def intrinsics_for(pair: EvalPair, k: int, size: tuple[int, int]) -> np.ndarray:
    """K of image k (0 or 1) for its stored size (w, h), rescaled when it was calibrated at another size."""
    K = pair.K0 if k == 0 else pair.K1
    calibrated = pair.calibrated_size0 if k == 0 else pair.calibrated_size1
    if K is None:
        raise ValueError(f"pair {pair.name!r} has no intrinsics")
    if calibrated is None or tuple(calibrated) == tuple(size):
        return K
    return scale_intrinsics(K, (size[0] / calibrated[0], size[1] / calibrated[1]))


def upright_image(image: np.ndarray, rotation: int) -> np.ndarray:
    """np.rot90(image, rotation): the image as the matchers see it. Points found in it map back to the
    stored image with `preprocessing.rot90_points(points, -rotation, (its width, its height))`."""
    return np.ascontiguousarray(np.rot90(image, rotation % 4)) if rotation % 4 else image


def read_pair_images(pair: EvalPair) -> tuple[np.ndarray, np.ndarray]:
    """The two stored images (as `image_io.read_image`: RGB(A) or gray, uint8/uint16/float)."""
    return read_image(pair.image0), read_image(pair.image1)


def sequential_pairs(count: int, gaps: Iterable[int], wrap: bool) -> list[tuple[int, int]]:
    """Index pairs (i, i+g) for each i and gap g; modulo `count` when `wrap` (a ring), else inside."""
    pairs = []
    for i in range(count):
        for g in gaps:
            j = i + g
            if wrap:
                j %= count
            if j < count and j != i and (i, j) not in pairs and (j, i) not in pairs:
                pairs.append((i, j))
    return pairs


# ---------------------------------------------------------------------------------------------
# Relative pose layouts


def read_pairs_with_gt(
    pairs_file: str | Path, image_root: str | Path, corner_convention: bool = False
) -> list[EvalPair]:
    """A SuperGlue/LoFTR-style pairs file: per line `name0 name1 rot0 rot1 K0(9) K1(9) T_0to1(16)`
    (K row-major, T_0to1 cam1_from_cam0 row-major), names relative to `image_root`. rot0/rot1 are
    np.rot90 turns applied to the images before matching (the ground truth refers to the stored
    images). `corner_convention`: the file's K put pixel centres at +0.5 (COLMAP)."""
    pairs_file, image_root = Path(pairs_file), Path(image_root)
    out = []
    for number, tokens in read_lines(pairs_file):
        if len(tokens) != 38:
            raise DatasetFormatError(
                f"{location(pairs_file, number)}: expected 38 fields ({PAIRS_GT_FIELDS}), got {len(tokens)}"
            )
        rotations = parse_floats(tokens[2:4], pairs_file, number, "rot0 rot1")
        if not np.all(rotations == np.round(rotations)):
            raise DatasetFormatError(f"{location(pairs_file, number)}: rot0 rot1 must be integers (90-degree turns)")
        values = parse_floats(tokens[4:], pairs_file, number, "K0 K1 T_0to1")
        K0, K1, T = values[:9].reshape(3, 3), values[9:18].reshape(3, 3), values[18:].reshape(4, 4)
        if corner_convention:
            K0, K1 = corner_to_centre(K0), corner_to_centre(K1)
        out.append(
            EvalPair(
                f"{tokens[0]} {tokens[1]}",
                image_root / tokens[0],
                image_root / tokens[1],
                K0,
                K1,
                T,
                rotation0=int(rotations[0]),
                rotation1=int(rotations[1]),
            )
        )
    if not out:
        raise DatasetFormatError(f"{pairs_file}: no pairs in the file")
    return out


def load_npz(path: Path, keys: Sequence[str]) -> dict:
    require_file(path, "npz file")
    try:
        with np.load(path, allow_pickle=True) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DatasetFormatError(f"{path}: missing arrays {missing} (has {data.files})")
            return {k: data[k] for k in keys}
    except DatasetFormatError:
        raise
    except Exception as err:  # zip/pickle errors of a damaged file
        raise DatasetFormatError(f"{path}: cannot be read as npz: {err}") from None


def read_megadepth1500(
    npz_root: str | Path, image_root: str | Path, scenes: str | Path | Sequence[str] | None = None
) -> list[EvalPair]:
    """MegaDepth-1500 (LoFTR's `assets/megadepth_test_1500_scene_info`): scene-info npz files with
    `image_paths` (relative to `image_root`, e.g. Undistorted_SfM/0015/images/x.jpg), `intrinsics`
    [N,3,3] (COLMAP convention, converted), `poses` [N,4,4] world-to-camera, `pair_infos`
    ((idx0, idx1), overlap, central_matches). `scenes`: npz names without suffix, or a list file
    (megadepth_test_1500.txt); default: that list file when present, else every npz in npz_root."""
    npz_root, image_root = require_dir(npz_root, "MegaDepth scene-info"), Path(image_root)
    if scenes is None:
        list_file = npz_root / "megadepth_test_1500.txt"
        scenes = list_file if list_file.is_file() else sorted(p.stem for p in npz_root.glob("*.npz"))
    if isinstance(scenes, (str, Path)):
        scenes = [tokens[0] for _, tokens in read_lines(Path(scenes))]
    if not scenes:
        raise DatasetFormatError(f"{npz_root}: no scene-info npz files")
    out = []
    for scene in scenes:
        path = npz_root / (scene if scene.endswith(".npz") else f"{scene}.npz")
        info = load_npz(path, ("image_paths", "intrinsics", "poses", "pair_infos"))
        for n, pair_info in enumerate(info["pair_infos"]):
            try:
                i, j = (int(v) for v in pair_info[0])
                names = info["image_paths"][i], info["image_paths"][j]
                K0, K1 = info["intrinsics"][i], info["intrinsics"][j]
                P0, P1 = info["poses"][i], info["poses"][j]
            except (IndexError, TypeError, ValueError) as err:
                raise DatasetFormatError(f"{path}: pair_infos[{n}]: {err}") from None
            if names[0] is None or names[1] is None:
                raise DatasetFormatError(f"{path}: pair_infos[{n}] names an image without a path ({i}, {j})")
            K0, K1 = (np.asarray(K, np.float64).reshape(3, 3) for K in (K0, K1))
            P0, P1 = (np.asarray(P, np.float64).reshape(4, 4) for P in (P0, P1))
            if not all(np.isfinite(a).all() for a in (K0, K1, P0, P1)):
                raise DatasetFormatError(f"{path}: pair_infos[{n}]: non-finite intrinsics or pose")
            out.append(
                EvalPair(
                    f"{names[0]} {names[1]}",
                    image_root / names[0],
                    image_root / names[1],
                    corner_to_centre(K0),
                    corner_to_centre(K1),
                    P1 @ np.linalg.inv(P0),
                )
            )
    return out


def read_scannet1500(npz_root: str | Path, image_root: str | Path) -> list[EvalPair]:
    """ScanNet-1500 (LoFTR's `assets/scannet_test_1500`): `test.npz` with `name` [N,4] (scene, sub,
    frame0, frame1) and `intrinsics.npz` keyed `sceneXXXX_YY` (K of the 640x480 images); images at
    image_root/sceneXXXX_YY/color/<frame>.jpg, poses (camera-to-world 4x4) at .../pose/<frame>.txt."""
    npz_root, image_root = require_dir(npz_root, "ScanNet-1500 index"), require_dir(image_root, "ScanNet-1500 images")
    names = load_npz(npz_root / "test.npz", ("name",))["name"]
    intrinsics_path = require_file(npz_root / "intrinsics.npz", "ScanNet intrinsics")
    with np.load(intrinsics_path) as data:
        intrinsics = {k: np.asarray(data[k], np.float64).reshape(3, 3) for k in data.files}
    poses: dict[Path, np.ndarray] = {}

    def camera_to_world(path: Path) -> np.ndarray:
        if path not in poses:
            poses[path] = read_matrix(require_file(path, "ScanNet pose"), 4, 4, "camera-to-world pose")
        return poses[path]

    out = []
    for n, row in enumerate(np.asarray(names)):
        if len(row) != 4:
            raise DatasetFormatError(f"{npz_root / 'test.npz'}: name[{n}]: expected (scene, sub, frame0, frame1)")
        scene = f"scene{int(row[0]):04d}_{int(row[1]):02d}"
        if scene not in intrinsics:
            raise DatasetFormatError(f"{intrinsics_path}: no intrinsics for {scene} (test.npz name[{n}])")
        stems = [f"{scene}/color/{int(f)}.jpg" for f in row[2:]]
        c2w = [camera_to_world(image_root / scene / "pose" / f"{int(f)}.txt") for f in row[2:]]
        K = intrinsics[scene]
        out.append(
            EvalPair(
                f"{stems[0]} {stems[1]}",
                image_root / stems[0],
                image_root / stems[1],
                K,
                K,
                np.linalg.inv(c2w[1]) @ c2w[0],
                calibrated_size0=(640, 480),
                calibrated_size1=(640, 480),
            )
        )
    return out


def read_strecha(root: str | Path, max_gap: int = 3) -> list[EvalPair]:
    """Strecha layout: root/images/<name> (any image extension) and root/gt_dense_cameras/<name>.camera
    (or <name>.camera next to the image); pairs (i, i+1), ..., (i, i+max_gap) in name order."""
    root = require_dir(root, "Strecha dataset")
    images = root / "images" if (root / "images").is_dir() else root
    names = sorted(p.name for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(names) < 2:
        raise DatasetFormatError(f"{images}: fewer than two images")
    cameras = []
    for name in names:
        path = root / "gt_dense_cameras" / f"{name}.camera"
        cameras.append(read_strecha_camera(path if path.is_file() else images / f"{name}.camera"))
    out = []
    for i, j in sequential_pairs(len(names), range(1, max_gap + 1), wrap=False):
        (K0, R0, t0, size0), (K1, R1, t1, size1) = cameras[i], cameras[j]
        out.append(
            EvalPair(
                f"{names[i]} {names[j]}",
                images / names[i],
                images / names[j],
                K0,
                K1,
                relative_pose(R0, t0, R1, t1),
                calibrated_size0=size0,
                calibrated_size1=size1,
            )
        )
    return out


def read_middlebury_par(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A Middlebury `*_par.txt`: a count line, then `name k11..k33 r11..r33 t1 t2 t3` per image
    (projection K [R|t], world to camera). Returns {name: (K, R, t)} in file order."""
    lines = read_lines(require_file(path, "Middlebury parameter file"))
    if not lines or len(lines[0][1]) != 1 or not lines[0][1][0].isdigit():
        raise DatasetFormatError(f"{location(path, lines[0][0] if lines else 1)}: expected the image count")
    count = int(lines[0][1][0])
    if len(lines) - 1 != count:
        raise DatasetFormatError(f"{path}: the first line announces {count} images, the file has {len(lines) - 1}")
    cameras = {}
    for number, tokens in lines[1:]:
        if len(tokens) != 22:
            raise DatasetFormatError(
                f"{location(path, number)}: expected 22 fields (name k11..k33 r11..r33 t1 t2 t3), got {len(tokens)}"
            )
        v = parse_floats(tokens[1:], path, number, "K R t")
        cameras[tokens[0]] = (v[:9].reshape(3, 3), v[9:18].reshape(3, 3), v[18:21])
    return cameras


def read_middlebury(root: str | Path, gaps: Sequence[int] = (1, 2)) -> list[EvalPair]:
    """Middlebury multi-view: every folder at or below `root` with a `*_par.txt` is a ring; pairs
    (i, i+g) for g in `gaps`, wrapping around the ring (file order); names `<ring>/<image>`."""
    root = require_dir(root, "Middlebury dataset")
    par_files = sorted(root.glob("*_par.txt")) + sorted(root.glob("*/*_par.txt"))
    if not par_files:
        raise DatasetFormatError(f"{root}: no *_par.txt file in it or in its subfolders")
    out = []
    for par in par_files:
        cameras = read_middlebury_par(par)
        names = list(cameras)
        prefix = par.parent.relative_to(root).as_posix()
        for i, j in sequential_pairs(len(names), gaps, wrap=True):
            (K0, R0, t0), (K1, R1, t1) = cameras[names[i]], cameras[names[j]]
            n0, n1 = (names[i], names[j]) if prefix == "." else (f"{prefix}/{names[i]}", f"{prefix}/{names[j]}")
            out.append(
                EvalPair(
                    f"{n0} {n1}", par.parent / names[i], par.parent / names[j], K0, K1, relative_pose(R0, t0, R1, t1)
                )
            )
    return out


# ---------------------------------------------------------------------------------------------
# Homography layouts


def find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    return None


def sequence_folders(root: Path) -> list[Path]:
    root = require_dir(root, "homography dataset")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DatasetFormatError(f"{root}: no sequence folders")
    return folders


def homography_sequence(folder: Path, layout: str) -> list[EvalPair]:
    """Pairs (1, k) of one sequence folder in the `hpatches` (k.ppm, H_1_k) or `oxford` (imgk.*, H1tokp) layout."""
    image_stem, h_name = ("{}", "H_1_{}") if layout == "hpatches" else ("img{}", "H1to{}p")
    ref = find_image(folder, image_stem.format(1))
    if ref is None:
        raise DatasetFormatError(f"{folder}: no reference image {image_stem.format(1)}.* ({layout} layout)")
    out = []
    for k in range(2, 100):
        image, h_path = find_image(folder, image_stem.format(k)), folder / h_name.format(k)
        if image is None and not h_path.is_file():
            break
        if image is None:
            raise DatasetFormatError(f"{h_path}: no image {image_stem.format(k)}.* for this homography")
        H = read_matrix(require_file(h_path, f"homography for {image.name}"), 3, 3, "homography")
        out.append(EvalPair(f"{folder.name}/{ref.name} {folder.name}/{image.name}", ref, image, H_0to1=H))
    if not out:
        raise DatasetFormatError(f"{folder}: no image pairs ({layout} layout)")
    return out


def read_hpatches(root: str | Path) -> list[EvalPair]:
    """HPatches: root/<sequence>/1.ppm..6.ppm and H_1_k (3x3 text, image-1 to image-k pixels)."""
    return [p for folder in sequence_folders(Path(root)) for p in homography_sequence(folder, "hpatches")]


def read_oxford(root: str | Path) -> list[EvalPair]:
    """Oxford affine: root/<sequence>/img1..img6.<ext> and H1toNp (3x3 text, img1 to imgN pixels)."""
    return [p for folder in sequence_folders(Path(root)) for p in homography_sequence(folder, "oxford")]


def read_homography_dataset(root: str | Path) -> list[EvalPair]:
    """HPatches or Oxford layout, decided per sequence folder (an `H_1_2` file means HPatches)."""
    return [
        p
        for folder in sequence_folders(Path(root))
        for p in homography_sequence(folder, "hpatches" if (folder / "H_1_2").is_file() else "oxford")
    ]
