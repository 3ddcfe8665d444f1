"""hloc's text files: pairs (`name0 name1` per line) and image lists, and image names from a folder.

An image is named by its path relative to the image root, with `/`. Readers skip blank lines and
`#` comments; bad input raises InputError naming the file (and line) before the caller does any work.
"""

from collections.abc import Iterable, Sequence
from pathlib import Path

from ..image_io import IMAGE_EXTENSIONS
from ..io import list_h5_names
from . import atomic
from .errors import InputError

Pair = tuple[str, str]


def list_images(image_dir: Path) -> list[str]:
    """Names (relative paths with `/`) of the image files under `image_dir`, recursively, sorted.
    Hidden files and folders (".name", e.g. macOS "._IMG.jpg" metadata) are not images."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found")
    names = (
        p.relative_to(image_dir) for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    return sorted(n.as_posix() for n in names if not any(part.startswith(".") for part in n.parts))


def read_image_list(path: Path) -> list[str]:
    """First token of every line (so lists with intrinsics work too); blank lines and `#` skipped."""
    return [line.split()[0] for line in _lines(path, "image list")]


def collect_image_names(
    image_list: Path | Sequence[str] | None = None,
    features: Path | None = None,
    image_dir: Path | None = None,
) -> list[str]:
    """Image names from a list (file or sequence), else a features file, else an image folder;
    InputError naming the source when it holds none."""
    if image_list is not None:
        source = image_list if isinstance(image_list, (str, Path)) else "the image list"
        names = read_image_list(image_list) if isinstance(image_list, (str, Path)) else list(image_list)
    elif features is not None:
        source, names = features, list_h5_names(features)
    elif image_dir is not None:
        source, names = image_dir, list_images(image_dir)
    else:
        raise ValueError("give an image list, a features file or an image folder")
    if not names:
        raise InputError(f"{source}: no images")
    return names


def read_pairs(
    path: Path,
    image_dir: Path | None = None,
    known_names: Iterable[str] | None = None,
    allow_empty: bool = False,
) -> list[Pair]:
    """`name0 name1` per line (blank lines and `#` comments skipped), in file order.

    Every name must be a file under `image_dir` and/or one of `known_names` when given; a bad line
    raises InputError naming the file and line, before the caller does any work.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pairs file not found")
    known = None if known_names is None else set(known_names)
    checked: dict[str, str | None] = {}  # name -> why it is unknown (None: fine)

    def problem(name: str) -> str | None:
        if name not in checked:
            why = None
            if image_dir is not None and not (Path(image_dir) / name).is_file():
                why = f"image {name!r} not found in {image_dir}"
            elif known is not None and name not in known:
                why = f"unknown image {name!r}"
            checked[name] = why
        return checked[name]

    pairs = []
    for lineno, line in enumerate(read_text_file(path, "pairs").splitlines(), 1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) != 2:
            raise InputError(f"{path}:{lineno}: expected 'name0 name1', got {line.strip()!r}")
        for name in tokens:
            if why := problem(name):
                raise InputError(f"{path}:{lineno}: {why}")
        pairs.append((tokens[0], tokens[1]))
    if not pairs and not allow_empty:
        raise InputError(f"{path}: no pairs in the file")
    return pairs


def write_pairs(path: Path, pairs: Iterable[Pair]) -> None:
    """One `name0 name1` line per pair, written crash-safe."""
    atomic.write_text(path, "".join(f"{a} {b}\n" for a, b in pairs))


def read_pairs_to_match(path: Path, image_dir: Path) -> tuple[list[Pair], list[Pair]]:
    """The pairs of a pairs file (every name an image under `image_dir`) and its `unique_pairs`;
    InputError naming the file when no pair is left (only self-pairs)."""
    listed = read_pairs(path, image_dir=image_dir)
    unique = unique_pairs(listed)
    if not unique:
        raise InputError(f"{path}: only self-pairs (an image with itself), no pair of two images to match")
    return listed, unique


def unique_pairs(pairs: Iterable[Pair]) -> list[Pair]:
    """Pairs in first-seen order without self-pairs and without repeats in either orientation."""
    seen: set[Pair] = set()
    out = []
    for a, b in pairs:
        if a != b and (a, b) not in seen and (b, a) not in seen:
            seen.add((a, b))
            out.append((a, b))
    return out


def read_text_file(path: Path, what: str) -> str:
    """The content of a text file; InputError naming it when it is binary (not UTF-8, or NUL bytes)."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text {what} file") from None
    if "\0" in text:
        raise InputError(f"{path}: not a text {what} file")
    return text


def _lines(path: Path, what: str) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return [
        line for line in read_text_file(path, what).splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
