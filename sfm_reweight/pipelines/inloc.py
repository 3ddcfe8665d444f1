"""InLoc (hloc's InLoc method, our matcher): queries matched to retrieved database cutouts, whose
keypoints are lifted to 3D by the cutouts' scan points, one PnP per query.

    sfm-reweight inloc --dataset datasets/inloc --outputs outputs/inloc \\
        [--matcher eloftr_reweight] [--num_loc 40] [--loc_pairs pairs-query-netvlad40-temporal.txt]

The dataset layout is in datasets/inloc/README.md; image names are relative to the dataset folder
(`query/iphone7/IMG_0731.JPG`, `database/cutouts/DUC1/024/DUC_cutout_024_0_0.jpg`), as in hloc's
shipped pairs. Steps: retrieval (extract_global over cutouts and queries, `num_loc` cutouts per
query; or `--loc_pairs`) -> matching -> localize_inloc. Writes into OUTPUTS the pairs, features,
matches and the submission file `InLoc_hloc_<matcher>_<retrieval><num_loc>.txt` (`name qw qx qy qz tx
ty tz`, basenames, for visuallocalization.net), its `_logs.json` and summary.json.
"""

import json
import logging
from pathlib import Path
from typing import Any

from sfm_reweight import cli, localize_inloc, match_dense, pairs_from_retrieval
from sfm_reweight.utils import atomic
from sfm_reweight.utils.errors import InputError
from sfm_reweight.utils.pairs import list_images

logger = logging.getLogger(__name__)

LAYOUT = "see datasets/inloc/README.md for the layout"


def dataset_images(dataset: Path) -> tuple[list[str], list[str]]:
    """(query names, cutout names), relative to the dataset folder."""
    folders = {"query": dataset / "query", "cutouts": dataset / "database" / "cutouts"}
    names = {}
    for what, folder in folders.items():
        if not folder.is_dir():
            raise InputError(f"{folder}: not found ({LAYOUT})")
        names[what] = [f"{folder.relative_to(dataset).as_posix()}/{n}" for n in list_images(folder)]
        if not names[what]:
            raise InputError(f"{folder}: no images ({LAYOUT})")
    return names["query"], names["cutouts"]


def main(
    dataset: Path,
    outputs: Path,
    matcher: str | dict = match_dense.DEFAULT_CONF,
    num_loc: int = 40,
    loc_pairs: Path | None = None,
    localizer: str | dict = "default",
) -> dict[str, Any]:
    """Run the benchmark pipeline and return the summary (also OUTPUTS/summary.json). `matcher`: a
    `match_dense.confs` name or a dict overlaid on one."""
    matcher = match_dense.resolve_conf(matcher)
    queries, cutouts = dataset_images(dataset)
    outputs.mkdir(parents=True, exist_ok=True)
    loc_pairs, retrieval = pairs_from_retrieval.benchmark_query_pairs(
        loc_pairs, dataset, outputs, num_loc, queries, cutouts
    )
    features, matches = match_dense.main(matcher, loc_pairs, dataset, outputs)
    results = outputs / f"InLoc_hloc_{matcher['name']}_{retrieval}{num_loc}.txt"
    loc = localize_inloc.main(localizer, dataset, loc_pairs, features, matches, results)
    summary = {
        "matcher": matcher["name"],
        "loc_pairs": str(loc_pairs),
        "results": str(results),
        "queries": loc["queries"],
        "localized": loc["localized"],
        "failed": loc["failed"],
    }
    atomic.write_text(outputs / "summary.json", json.dumps(summary, indent=2))
    logger.info(
        "inloc: localized %d / %d queries; submit %s to visuallocalization.net.",
        loc["localized"],
        loc["queries"],
        results,
    )
    return summary


def command(argv: list[str] | None = None) -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--dataset", type=Path, default=Path("datasets/inloc"))
    parser.add_argument("--outputs", type=Path, default=Path("outputs/inloc"))
    cli.add_matcher_arguments(parser, match_dense.confs, match_dense.DEFAULT_CONF)
    parser.add_argument("--num_loc", type=int, default=40)
    parser.add_argument(
        "--loc_pairs", type=Path, help="query pairs to use instead of our retrieval (e.g. hloc's shipped NetVLAD pairs)"
    )
    parser.add_argument("--localizer", default="default", choices=sorted(localize_inloc.confs))
    cli.run(main, **cli.pipeline_kwargs(parser.parse_args(argv)))


if __name__ == "__main__":
    command()
