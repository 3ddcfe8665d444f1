"""Pairs from image retrieval: each query with its top-k database images by global-descriptor
similarity (dot product of the descriptors as stored, as hloc does; extractors L2-normalise).

    python -m sfm_reweight.pairs_from_retrieval --descriptors global.h5 --output pairs.txt \
        --num_matched 20 --query_prefix query/ --db_prefix db/
"""

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycolmap

from . import cli, extract_global
from .io import list_global_descriptor_names, list_h5_names, read_global_descriptors
from .utils.errors import InputError
from .utils.pairs import Pair, check_positive, read_image_list, write_pairs

logger = logging.getLogger(__name__)

CHUNK_ROWS = 1024  # score-matrix rows computed at once (bounded memory for large query sets)


def top_k(scores: np.ndarray, invalid: np.ndarray, k: int, min_score: float | None = None) -> list[tuple[int, int]]:
    """(row, column) pairs of the k best valid columns of every row of `scores` [R,C], best first
    (ties: lower column first), dropping invalid entries and scores below `min_score`."""
    scores = np.where(invalid, -np.inf, scores)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    keep = np.isfinite(best) if min_score is None else np.isfinite(best) & (best >= min_score)
    rows, ranks = np.nonzero(keep)
    return list(zip(rows.tolist(), order[rows, ranks].tolist()))


def select_names(
    names: Sequence[str],
    prefix: str | Sequence[str] | None = None,
    image_list: Path | Sequence[str] | None = None,
    model: Path | None = None,
) -> list[str]:
    """The names selected by a list (file or sequence), the images of a COLMAP model, or a prefix
    (a string or several); all names if none is given."""
    if image_list is not None:
        selected = read_image_list(image_list) if isinstance(image_list, (str, Path)) else list(image_list)
    elif model is not None:
        selected = [im.name for im in pycolmap.Reconstruction(model).images.values()]
    elif prefix is not None:
        prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
        return [n for n in names if n.startswith(prefixes)]
    else:
        return list(names)
    known = set(names)
    missing = [n for n in selected if n not in known]
    if missing:
        raise InputError(f"{len(missing)} selected images have no global descriptor, e.g. {missing[0]!r}")
    return selected


def main(
    descriptors: Path,
    output: Path,
    num_matched: int,
    query_prefix: str | Sequence[str] | None = None,
    query_list: Path | Sequence[str] | None = None,
    db_prefix: str | Sequence[str] | None = None,
    db_list: Path | Sequence[str] | None = None,
    db_model: Path | None = None,
    db_descriptors: Path | Sequence[Path] | None = None,
    min_score: float | None = None,
) -> list[Pair]:
    """Write `query db` pairs, each query's `num_matched` most similar database images (never itself).

    Queries and database images come from `descriptors`; the database ones from `db_descriptors`
    (one file or several) when given. No pair at all is an error unless `min_score` dropped them.
    """
    check_positive(num_matched=num_matched)
    db_files = (
        [descriptors]
        if db_descriptors is None
        else ([db_descriptors] if isinstance(db_descriptors, (str, Path)) else list(db_descriptors))
    )
    queries = select_names(list_global_descriptor_names(descriptors), query_prefix, query_list)
    name_to_file = {n: f for f in db_files for n in list_global_descriptor_names(f)}
    db_names = select_names(list(name_to_file), db_prefix, db_list, db_model)
    if not queries or not db_names:
        raise InputError(f"{descriptors}: {len(queries)} query and {len(db_names)} database images selected")

    by_file = {f: [n for n in db_names if name_to_file[n] == f] for f in db_files}
    db_names = [n for names in by_file.values() for n in names]  # the row order of db_desc
    db_desc = np.concatenate([read_global_descriptors(f, names) for f, names in by_file.items() if names])
    query_dim = read_global_descriptors(descriptors, queries[:1]).shape[1]
    if query_dim != db_desc.shape[1]:
        raise InputError(
            f"{descriptors}: {query_dim}-d query descriptors against {db_desc.shape[1]}-d database ones"
            " (made with other settings)"
        )
    db_array = np.array(db_names, dtype=object)
    pairs = []
    for start in range(0, len(queries), CHUNK_ROWS):
        chunk = queries[start : start + CHUNK_ROWS]
        scores = read_global_descriptors(descriptors, chunk) @ db_desc.T
        invalid = np.array(chunk, dtype=object)[:, None] == db_array[None]
        pairs += [(chunk[r], db_names[c]) for r, c in top_k(scores, invalid, num_matched, min_score)]
    if not pairs and min_score is None:
        raise InputError(f"{descriptors}: no pairs: the only database images selected are the queries themselves")
    write_pairs(output, pairs)
    logger.info(
        "pairs_from_retrieval: %d pairs for %d queries against %d database images (top %d) written to %s.",
        len(pairs),
        len(queries),
        len(db_names),
        num_matched,
        output,
    )
    return pairs


def from_images(
    conf: str | dict,
    image_dir: Path,
    export_dir: Path,
    output: Path,
    num_matched: int,
    queries: Sequence[str],
    db: Sequence[str],
) -> list[Pair]:
    """Retrieval pairs straight from images: `extract_global` descriptors (configuration `conf`) of the
    database images `db`, whose codebook is learned on them, then of the `queries`, encoded with that
    codebook into the same file in `export_dir`; each query with its `num_matched` most similar
    database images, written to `output`."""
    descriptors = extract_global.main(conf, image_dir, export_dir, image_list=list(db))
    known = set(db)
    if new := [q for q in queries if q not in known]:
        extract_global.main(conf, image_dir, export_dir, image_list=new)
    return main(
        descriptors, output, num_matched, query_list=described(descriptors, queries), db_list=described(descriptors, db)
    )


def benchmark_query_pairs(
    shipped: Path | None, image_dir: Path, export_dir: Path, num_matched: int, queries: Sequence[str], db: Sequence[str]
) -> tuple[Path, str]:
    """The query pairs of a benchmark pipeline and the retrieval's name in its results file: the
    `shipped` pairs file as it is ("shipped"), else `from_images` with the default descriptors into
    `export_dir/pairs-query-<descriptors><num_matched>.txt` (their output name, e.g. "vlad-xfeat")."""
    if shipped is not None:
        return Path(shipped), "shipped"
    retrieval = extract_global.confs[extract_global.DEFAULT_CONF]["output"]
    path = Path(export_dir, f"pairs-query-{retrieval}{num_matched}.txt")
    from_images(extract_global.DEFAULT_CONF, image_dir, export_dir, path, num_matched, queries, db)
    return path, retrieval


def described(descriptors: Path, names: Sequence[str]) -> list[str]:
    """The names that have a descriptor in `descriptors` (extract_global skips and reports the
    images it cannot read), in the given order."""
    have = set(list_h5_names(descriptors))
    return [n for n in names if n in have]


def command(argv: list[str] | None = None) -> None:
    cli.command(main, __doc__, argv)


if __name__ == "__main__":
    command()
