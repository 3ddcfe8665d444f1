"""Ground truth read from files: the Strecha `.camera` format (fountain-P11's, and the embedded scene
writes its own), and the checks every reader of a text data file shares (a missing file or folder, a
bad number, a line naming the file); errors are `DatasetFormatError` naming the file and line."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .utils.errors import SfmReweightError


class DatasetFormatError(SfmReweightError, ValueError):
    """A dataset file that does not follow its layout; the message names the file (and line)."""


def location(path: Path, line: int | None = None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def parse_floats(tokens: Sequence[str], path: Path, line: int | None, what: str) -> np.ndarray:
    """Tokens -> finite float64 array; DatasetFormatError naming file, line and `what` otherwise."""
    try:
        values = np.array([float(t) for t in tokens], np.float64)
    except ValueError as err:
        raise DatasetFormatError(f"{location(path, line)}: {what}: {err}") from None
    if not np.isfinite(values).all():
        raise DatasetFormatError(f"{location(path, line)}: {what}: non-finite value")
    return values


def read_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace tokens) of the non-empty, non-comment (#) lines of a text file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    out = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            tokens = line.split("#", 1)[0].split()
            if tokens:
                out.append((number, tokens))
    return out


def read_matrix(path: Path, rows: int, cols: int, what: str) -> np.ndarray:
    """A text file holding one rows x cols matrix, one row per line (e.g. a homography)."""
    lines = read_lines(path)
    if len(lines) != rows:
        raise DatasetFormatError(f"{path}: {what}: expected {rows} lines of {cols} numbers, got {len(lines)} lines")
    matrix = []
    for number, tokens in lines:
        if len(tokens) != cols:
            raise DatasetFormatError(f"{location(path, number)}: {what}: expected {cols} numbers, got {len(tokens)}")
        matrix.append(parse_floats(tokens, path, number, what))
    return np.stack(matrix)


def require_dir(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: {what} folder not found")
    return path


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found")
    return path


def read_strecha_camera(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """A Strecha `.camera` file -> (K [3,3], R_wc [3,3], t_wc [3], (w, h)). Lines: K (3), radial
    distortion (1, must be zero: the images are undistorted), R camera-to-world (3), centre C (1),
    `w h` (1); world to camera is R_wc = R^T, t_wc = -R^T C."""
    lines = read_lines(require_file(path, "Strecha camera file"))
    counts = [3, 3, 3, 3, 3, 3, 3, 3, 2]
    if len(lines) < len(counts):
        raise DatasetFormatError(f"{path}: expected 9 lines (K 3, distortion 1, R 3, C 1, w h 1), got {len(lines)}")
    rows = []
    for (number, tokens), count in zip(lines, counts):
        if len(tokens) != count:
            raise DatasetFormatError(f"{location(path, number)}: expected {count} numbers, got {len(tokens)}")
        rows.append(parse_floats(tokens, path, number, "camera"))
    K, distortion, R, C = np.stack(rows[0:3]), rows[3], np.stack(rows[4:7]), rows[7]
    if np.any(distortion != 0):
        raise DatasetFormatError(f"{location(path, lines[3][0])}: non-zero distortion is not supported")
    if abs(np.linalg.det(R) - 1) > 1e-3:
        raise DatasetFormatError(f"{path}: R is not a rotation (det {np.linalg.det(R):.4f})")
    return K, R.T, -R.T @ C, (int(rows[8][0]), int(rows[8][1]))


def read_strecha_cameras(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]]:
    """Every `<image name>.camera` file of a folder (`read_strecha_camera`'s (K, R_wc, t_wc, (w, h))) by image name."""
    folder = require_dir(Path(folder), "ground-truth cameras folder")
    cameras = {path.name.removesuffix(".camera"): read_strecha_camera(path) for path in sorted(folder.glob("*.camera"))}
    if not cameras:
        raise DatasetFormatError(f"{folder}: no <image name>.camera files")
    return cameras
