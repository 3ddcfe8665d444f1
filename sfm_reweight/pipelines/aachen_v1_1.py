"""Aachen Day-Night v1.1 (hloc's pipeline, our matcher): the reference model's poses triangulate our
matches into a map, and the day and night queries are localized against it.

    sfm-reweight aachen_v1_1 --dataset datasets/aachen_v1.1 --outputs outputs/aachen_v1.1 \\
        [--matcher eloftr_reweight_aachen] [--num_covis 20] [--num_loc 50] [--loc_pairs pairs-query-netvlad50.txt]

The dataset layout is in datasets/aachen_v1.1/README.md. Steps: pairs_from_covisibility (reference
model, `num_covis` per image) -> matching -> triangulation (reference poses) -> retrieval
(extract_global over db and queries, `num_loc` db images per query, db images from the reference
model; or hloc's shipped `--loc_pairs`) -> matching of the queries (the db keypoints stay fixed) ->
localize_sfm. Writes into OUTPUTS the pairs, features, matches, sfm_<matcher>/ and the submission file
`Aachen-v1.1_hloc_<matcher>_<retrieval><num_loc>.txt` (`name qw qx qy qz tx ty tz`, basenames, for
visuallocalization.net), its `_logs.json` and summary.json.
"""

import json
import logging
from pathlib import Path
from typing import Any

import pycolmap

from sfm_reweight import cli, localize_sfm, match_dense, pairs_from_covisibility, pairs_from_retrieval, triangulation
from sfm_reweight.utils import atomic
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.queries import read_queries

logger = logging.getLogger(__name__)

LAYOUT = "see datasets/aachen_v1.1/README.md for the layout"


def dataset_paths(dataset: Path) -> tuple[Path, Path, str]:
    """(images, reference model, query lists glob) of the dataset, checked to exist."""
    images, reference = dataset / "images_upright", dataset / "3D-models" / "aachen_v_1_1"
    for path in (images, reference):
        if not path.is_dir():
            raise InputError(f"{path}: not found ({LAYOUT})")
    return images, reference, str(dataset / "queries" / "*_time_queries_with_intrinsics.txt")


def main(
    dataset: Path,
    outputs: Path,
    matcher: str | dict = "eloftr_reweight_aachen",
    num_covis: int = 20,
    num_loc: int = 50,
    loc_pairs: Path | None = None,
    localizer: str | dict = "default",
) -> dict[str, Any]:
    """Run the benchmark pipeline and return the summary (also OUTPUTS/summary.json). `matcher`: a
    `match_dense.confs` name or a dict overlaid on one."""
    matcher = match_dense.resolve_conf(matcher)
    name = matcher["name"]
    images, reference, queries = dataset_paths(dataset)
    query_names = list(read_queries(queries))
    outputs.mkdir(parents=True, exist_ok=True)

    sfm_pairs = outputs / f"pairs-db-covis{num_covis}.txt"
    pairs_from_covisibility.main(reference, sfm_pairs, num_covis)
    features, sfm_matches = match_dense.main(matcher, sfm_pairs, images, outputs)
    sfm_dir = outputs / f"sfm_{name}"
    triangulation.main("default", sfm_dir, reference, images, sfm_pairs, features, sfm_matches)

    # the reference model's images are the database (read only when retrieval needs them)
    db = [] if loc_pairs is not None else [image.name for image in pycolmap.Reconstruction(reference).images.values()]
    loc_pairs, retrieval = pairs_from_retrieval.benchmark_query_pairs(
        loc_pairs, images, outputs, num_loc, query_names, db
    )
    loc_matches = outputs / f"matches-loc-{name}_{Path(loc_pairs).stem}.h5"
    match_dense.main(matcher, loc_pairs, images, features=features, matches=loc_matches)
    results = outputs / f"Aachen-v1.1_hloc_{name}_{retrieval}{num_loc}.txt"
    loc = localize_sfm.main(localizer, sfm_dir, queries, loc_pairs, features, loc_matches, results)
    by_time = {time: [q for q in query_names if q.startswith(f"query/{time}/")] for time in ("day", "night")}
    summary = {
        "matcher": name,
        "loc_pairs": str(loc_pairs),
        "results": str(results),
        "queries": loc["queries"],
        "localized": loc["localized"],
        **{
            f"localized_{time}": f"{sum(q not in loc['failed'] for q in names)}/{len(names)}"
            for time, names in by_time.items()
        },
        "failed": loc["failed"],
    }
    atomic.write_text(outputs / "summary.json", json.dumps(summary, indent=2))
    logger.info(
        "aachen_v1_1: localized %s day and %s night queries; submit %s to visuallocalization.net.",
        summary["localized_day"],
        summary["localized_night"],
        results,
    )
    return summary


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--dataset", type=Path, default=Path("datasets/aachen_v1.1"))
    parser.add_argument("--outputs", type=Path, default=Path("outputs/aachen_v1.1"))
    cli.add_matcher_arguments(parser, match_dense.confs, "eloftr_reweight_aachen")
    parser.add_argument("--num_covis", type=int, default=20)
    parser.add_argument("--num_loc", type=int, default=50)
    parser.add_argument(
        "--loc_pairs", type=Path, help="query pairs to use instead of our retrieval (e.g. hloc's shipped NetVLAD pairs)"
    )
    parser.add_argument("--localizer", default="default", choices=sorted(localize_sfm.confs))
    cli.run(main, **cli.pipeline_kwargs(parser.parse_args(argv)))


if __name__ == "__main__":
    command()
