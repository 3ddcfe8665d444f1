"""Localization's text files: query lists with intrinsics, retrieval pairs and results (poses).

Query list (hloc's `*_queries_with_intrinsics.txt`): `name MODEL width height params...` per line,
e.g. `query/day/nexus4/IMG_1.jpg SIMPLE_RADIAL 1600 1200 1469.2 800 600 -0.0353` (COLMAP camera
models and parameter order); a path may be a glob over file names (`queries/*_with_intrinsics.txt`).
Retrieval: pairs `query db` per line (utils/pairs.py), grouped by query in file order.
Results: `name qw qx qy qz tx ty tz` per line, the pose cam_from_world (x_cam = R x_world + t) with a
w-first unit quaternion; `name` is what `result_name` makes of the image name (the benchmarks want
the basename). Blank lines and `#` comments are skipped; bad input raises InputError naming file and line.
"""

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pycolmap

from . import atomic
from .errors import InputError
from .pairs import check_names, read_pairs, read_text_file

NAME_FORMATS = ("basename", "camera", "full")
CAMERA_MODELS = tuple(name for name in pycolmap.CameraModelId.__members__ if name != "INVALID")


def parse_query_line(line: str, where: str) -> tuple[str, pycolmap.Camera]:
    """`name MODEL width height params...` -> (name, camera); `where` (file:line) names it in errors."""
    tokens = line.split()
    if len(tokens) < 5:
        raise InputError(f"{where}: expected 'name MODEL width height params...', got {line.strip()!r}")
    name, model, width, height, *params = tokens
    check_names([name], where)
    if model not in CAMERA_MODELS:
        raise InputError(f"{where}: unknown camera model {model!r}; expected one of {', '.join(CAMERA_MODELS)}")
    try:
        size = int(width), int(height)
        values = np.array([float(p) for p in params], np.float64)
    except ValueError:
        raise InputError(
            f"{where}: width and height must be integers and params numbers, got {line.strip()!r}"
        ) from None
    if min(size) <= 0 or not np.isfinite(values).all():
        raise InputError(f"{where}: non-positive image size or non-finite camera parameter in {line.strip()!r}")
    camera = pycolmap.Camera(model=model, width=size[0], height=size[1], params=values)
    if not camera.verify_params():
        raise InputError(f"{where}: {model} takes the parameters ({camera.params_info}), got {len(values)} values")
    return name, camera


def query_list_files(path: str | Path) -> list[Path]:
    """The query list `path`, or the files its name matches as a glob (in its folder), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    files = sorted(p for p in path.parent.glob(path.name) if p.is_file())
    if not files:
        raise InputError(f"{path}: no query list found (neither a file nor a glob matching one)")
    return files


def read_queries(path: str | Path) -> dict[str, pycolmap.Camera]:
    """Query name -> camera from a query list with intrinsics, or from every list a glob matches
    (hloc's `parse_image_lists(..., with_intrinsics=True)`), in file order; a name listed twice is an error."""
    queries: dict[str, pycolmap.Camera] = {}
    first_seen: dict[str, str] = {}
    for file in query_list_files(path):
        lineno = 0
        for lineno, line in enumerate(read_text_file(file, "query list").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{file}:{lineno}"
            name, camera = parse_query_line(line, where)
            if name in queries:
                raise InputError(f"{where}: query {name!r} listed twice (first at {first_seen[name]})")
            queries[name], first_seen[name] = camera, where
    if not queries:
        raise InputError(f"{path}: no queries in the query list")
    return queries


def read_retrieval(path: str | Path) -> dict[str, list[str]]:
    """Retrieval pairs `query db` -> {query: [db, ...]} in file order, repeats dropped."""
    retrieval: dict[str, list[str]] = {}
    for query, db in read_pairs(Path(path)):
        retrieved = retrieval.setdefault(query, [])
        if db not in retrieved:
            retrieved.append(db)
    return retrieval


def result_name(name: str, name_format: str = "basename") -> str:
    """The name of image `name` in a results file: its basename (Aachen, InLoc), `<folder>/<basename>`
    ("camera": hloc's `prepend_camera_name`, for RobotCar, CMU, 7Scenes) or the name itself ("full")."""
    if name_format not in NAME_FORMATS:
        raise InputError(f"unknown result name format {name_format!r}; expected one of {', '.join(NAME_FORMATS)}")
    parts = name.split("/")
    if name_format == "basename":
        return parts[-1]
    if name_format == "camera":
        return "/".join(parts[-2:])
    return name


def result_names(names: list[str], name_format: str, where: str) -> dict[str, str]:
    """Image name -> result name for every name; two images that would get the same result name are
    an InputError (`where` names their source), since a results file could not tell them apart."""
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name in names:
        short = result_name(name, name_format)
        if short in owner:
            raise InputError(
                f"{where}: {owner[short]!r} and {name!r} both become {short!r} in a results file with"
                f" result names {name_format!r}; use 'camera' or 'full'"
            )
        out[name], owner[short] = short, name
    return out


def pose_values(cam_from_world: pycolmap.Rigid3d) -> list[float]:
    """[qw, qx, qy, qz, tx, ty, tz] of a pose (pycolmap's quaternion is xyzw)."""
    x, y, z, w = cam_from_world.rotation.quat
    return [float(v) for v in (w, x, y, z, *cam_from_world.translation)]


def pose_to_line(name: str, cam_from_world: pycolmap.Rigid3d) -> str:
    """`name qw qx qy qz tx ty tz` of a cam_from_world pose (floats written to round-trip exactly)."""
    return " ".join([name, *map(repr, pose_values(cam_from_world))])


def write_results(path: str | Path, poses: Mapping[str, pycolmap.Rigid3d]) -> Path:
    """One `name qw qx qy qz tx ty tz` line per pose (cam_from_world, names as given), crash-safe."""
    return atomic.write_text(path, "".join(pose_to_line(name, pose) + "\n" for name, pose in poses.items()))


def read_results(path: str | Path) -> dict[str, pycolmap.Rigid3d]:
    """Name -> cam_from_world from a results file; the quaternion (w first) is normalised."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: results file not found")
    poses: dict[str, pycolmap.Rigid3d] = {}
    for lineno, line in enumerate(read_text_file(path, "results").splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if len(tokens) != 8:
            raise InputError(f"{where}: expected 'name qw qx qy qz tx ty tz', got {line.strip()!r}")
        try:
            values = np.array([float(t) for t in tokens[1:]], np.float64)
        except ValueError:
            raise InputError(f"{where}: expected 7 numbers after the name, got {line.strip()!r}") from None
        norm = np.linalg.norm(values[:4])
        if not np.isfinite(values).all() or norm < 1e-6:
            raise InputError(f"{where}: non-finite value or zero quaternion in {line.strip()!r}")
        if tokens[0] in poses:
            raise InputError(f"{where}: {tokens[0]!r} has two poses")
        w, x, y, z = values[:4] / norm
        poses[tokens[0]] = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([x, y, z, w])), values[4:])
    return poses
