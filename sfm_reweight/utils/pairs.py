"""hloc's text files: pairs (`name0 name1` per line) and image lists, and image names from a folder.

An image is named by its path relative to the image root, with `/`, in canonical form and without
whitespace (`name_problem`). Readers skip blank lines and `#` comments; bad input raises InputError
naming the file (and line) before the caller does any work.
"""

import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..image_io import IMAGE_EXTENSIONS
from ..io import list_h5_names, names_to_pair
from . import atomic
from .errors import InputError

Pair = tuple[str, str]


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an image, or None: it must be a path inside the image folder as written
    (relative, no `..`; a symlink inside is fine), in canonical form (no `.` or empty parts, so that one
    image has one name in every file) and without whitespace (hloc's text files split lines on it)."""
    if any(c.isspace() for c in name):
        return (
            f"image name {name!r} has whitespace, which hloc's pairs format (`name0 name1` per line) cannot hold;"
            " rename the image"
        )
    canonical = posixpath.normpath(name)
    if not name or name.startswith("/") or canonical in (".", "..") or canonical.startswith("../"):
        return f"image name {name!r} is not a path inside the image folder (relative to it, with '/')"
    if canonical != name:
        return f"image name {name!r} is not in canonical form: write {canonical!r}"
    return None


def check_names(names: Iterable[str], where: str) -> None:
    """InputError `<where>: <problem>` for the first name with a `name_problem`."""
    for name in names:
        if why := name_problem(name):
            raise InputError(f"{where}: {why}")


def check_positive(**counts: int) -> None:
    """InputError for the first count below 1 (pairs per image, a window): below 1 means no pairs, or
    a slice from the end (`[:, :-3]`) that keeps nearly all."""
    for name, value in counts.items():
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")


def list_images(image_dir: Path) -> list[str]:
    """Names (relative paths with `/`) of the image files under `image_dir`, recursively, sorted.
    Hidden files and folders (".name", e.g. macOS "._IMG.jpg" metadata) are not images."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found")
    names = (
        p.relative_to(image_dir) for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    )
    names = sorted(n.as_posix() for n in names if not any(part.startswith(".") for part in n.parts))
    check_names(names, str(image_dir))  # a photo named with a space: refused here, not in a broken pairs file
    return names


def read_image_list(path: Path) -> list[str]:
    """First token of every line (so lists with intrinsics work too); blank lines and `#` skipped."""
    names = []
    for lineno, line in _lines(path, "image list"):
        names.append(line.split()[0])
        check_names(names[-1:], f"{path}:{lineno}")
    return names


def collect_image_names(
    image_list: Path | Sequence[str] | None = None,
    features: Path | None = None,
    image_dir: Path | None = None,
    minimum: int = 1,
) -> list[str]:
    """Image names from a list (file or sequence), else a features file, else an image folder;
    InputError naming the source when it holds fewer than `minimum` (2 for pairs) or a bad name."""
    if isinstance(image_list, (str, Path)):
        source, names = image_list, read_image_list(image_list)  # its names checked with their lines
    elif image_list is not None or features is not None:
        source = "the image list" if image_list is not None else features
        names = list(image_list) if image_list is not None else list_h5_names(features)
        check_names(names, str(source))
    elif image_dir is not None:
        source, names = image_dir, list_images(image_dir)  # its names checked by list_images
    else:
        raise ValueError("give an image list, a features file or an image folder")
    if not names:
        raise InputError(f"{source}: no images")
    if len(names) < minimum:
        raise InputError(f"{source}: only one image ({names[0]!r}); pairs need at least two")
    return names


def read_pairs(
    path: Path,
    image_dir: Path | None = None,
    known_names: Iterable[str] | None = None,
    allow_empty: bool = False,
) -> list[Pair]:
    """`name0 name1` per line (blank lines and `#` comments skipped), in file order.

    Every name must be canonical (`name_problem`), and a file under `image_dir` and/or one of
    `known_names` when given; a bad line raises InputError naming the file and line, before the
    caller does any work.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: pairs file not found")
    known = None if known_names is None else set(known_names)
    checked: dict[str, str | None] = {}  # name -> why it is unknown (None: fine)

    def problem(name: str) -> str | None:
        if name not in checked:
            why = name_problem(name)
            if why is None and image_dir is not None and not (Path(image_dir) / name).is_file():
                why = f"image {name!r} not found in {image_dir}"
            elif why is None and known is not None and name not in known:
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
    """One `name0 name1` line per pair, written crash-safe; a name `read_pairs` would refuse (e.g. from
    a descriptors file or a model) is an InputError instead of a file that reads back wrong."""
    pairs = list(pairs)
    check_names(dict.fromkeys(name for pair in pairs for name in pair), str(path))
    atomic.write_text(path, "".join(f"{a} {b}\n" for a, b in pairs))


def read_pairs_to_match(path: Path, image_dir: Path) -> tuple[list[Pair], list[Pair]]:
    """The pairs of a pairs file (every name an image under `image_dir`) and its `unique_pairs`;
    InputError naming the file when no pair is left (only self-pairs) or two pairs share a matches key."""
    listed = read_pairs(path, image_dir=image_dir)
    unique = unique_pairs(listed)
    if not unique:
        raise InputError(f"{path}: only self-pairs (an image with itself), no pair of two images to match")
    # hloc's key turns '/' into '-': (sub/x.jpg, a.jpg) and (sub-x.jpg, a.jpg) would overwrite each other
    owner: dict[str, Pair] = {}
    for a, b in unique:
        key = names_to_pair(a, b)
        if (other := owner.get(key)) is not None:
            x, y = (other[0], a) if other[0] != a else (other[1], b)
            raise InputError(
                f"{path}: images {x!r} and {y!r} would share a pair key in the matches file ({other} and"
                f" {(a, b)} both become {key!r}: hloc's pair key turns '/' into '-'); rename one of them"
            )
        owner[key], owner[names_to_pair(b, a)] = (a, b), (b, a)
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


def _lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines that are neither blank nor `#` comments."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    lines = enumerate(read_text_file(path, what).splitlines(), 1)
    return [(lineno, line) for lineno, line in lines if line.strip() and not line.lstrip().startswith("#")]
