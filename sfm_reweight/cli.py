"""The command line, one path for every stage and pipeline: a shared parser (`--conf`, `--options
key=value`, `--overwrite`, the weights and cluster options), one runner (`run`: one-line errors),
and the console script `sfm-reweight COMMAND ...` over every stage's `command`.

    sfm-reweight reconstruct --image_dir photos/ --output outputs/photos
    sfm-reweight match_dense --pairs pairs.txt --image_dir photos/ --export_dir outputs/ --options max_kps=4096
"""

import argparse
import ast
import importlib
import inspect
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .utils import cluster as ray_cluster
from .utils.conf import overlay
from .utils.errors import InputError, SfmReweightError

# command -> module with a `command(argv)`; the stages are also `python -m sfm_reweight.<module>`
COMMANDS = {
    "reconstruct": "sfm_reweight.pipelines.reconstruct",
    "localize": "sfm_reweight.pipelines.localize",
    "demo": "sfm_reweight.pipelines.demo",
    "aachen_v1_1": "sfm_reweight.pipelines.aachen_v1_1",
    "inloc": "sfm_reweight.pipelines.inloc",
    "relative_pose": "sfm_reweight.eval.relative_pose",
    "homography": "sfm_reweight.eval.homography",
    "ablation": "sfm_reweight.eval.ablation",
    "extract_global": "sfm_reweight.extract_global",
    "pairs_from_exhaustive": "sfm_reweight.pairs_from_exhaustive",
    "pairs_from_sequential": "sfm_reweight.pairs_from_sequential",
    "pairs_from_retrieval": "sfm_reweight.pairs_from_retrieval",
    "pairs_from_covisibility": "sfm_reweight.pairs_from_covisibility",
    "pairs_from_poses": "sfm_reweight.pairs_from_poses",
    "pairs_from_vocab_tree": "sfm_reweight.pairs_from_vocab_tree",
    "match_dense": "sfm_reweight.match_dense",
    "reconstruction": "sfm_reweight.reconstruction",
    "refine_tracks": "sfm_reweight.refine_tracks",
    "triangulation": "sfm_reweight.triangulation",
    "localize_sfm": "sfm_reweight.localize_sfm",
    "localize_inloc": "sfm_reweight.localize_inloc",
    "evaluate_localization": "sfm_reweight.evaluate_localization",
    "report": "sfm_reweight.report",
    "train": "sfm_reweight.train.trainer",
}


def short_list(names: Sequence[str], limit: int = 5) -> str:
    """The first few names, comma-separated, for a summary line."""
    return ", ".join(list(names)[:limit]) + (", ..." if len(names) > limit else "")


def one_line(err: BaseException) -> str:
    """The message of `err` on one line."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


INTERRUPTED = "interrupted; the same command resumes"
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def run(main: Callable[..., Any], **kwargs: Any) -> Any:
    """Call a stage's `main` with keyword arguments; the project's errors (`SfmReweightError`: bad
    input, a bad configuration name, key or value, a checkpoint that does not load, a full disk, ...)
    and a missing or unreadable file end the process with status 1 and one line `error: ...` instead
    of a traceback; Ctrl-C with status 130 and the line INTERRUPTED (the writes are crash-safe)."""
    try:
        return main(**kwargs)
    except (SfmReweightError, OSError) as e:
        sys.exit(f"error: {one_line(e)}")
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)


class Parser(argparse.ArgumentParser):
    """argparse's parser; an option it does not know that names a key of the stage's conf gets a hint
    to set it with `--options` (the stages take their settings there, one way for every key)."""

    conf_keys: frozenset[str] = frozenset()

    def parse_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse's signature
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            flags = [a[2:] for a in extra if a.startswith("--")]
            keys = [k for f in flags for k in (f, f.removeprefix("no_")) if k in self.conf_keys]
            hint = f"; a conf setting: --options {keys[0]}=VALUE" if keys else ""
            self.error(f"unrecognized arguments: {' '.join(extra)}{hint}")
        return parsed


def add_options(parser: argparse.ArgumentParser, flag: str, help: str, metavar: str = "KEY=VALUE") -> None:
    """A list option of `KEY=VALUE` settings (`parse_options`: dotted keys nest, values are Python literals)."""
    parser.add_argument(flag, nargs="+", default=[], type=key_value, metavar=metavar, help=help)


def key_value(item: str) -> str:
    """An `--options` item, `KEY=VALUE` (argparse type: a malformed one is a usage error)."""
    if "=" not in item or not item.partition("=")[0]:
        raise argparse.ArgumentTypeError(f"{item!r}: expected KEY=VALUE")
    return item


def parser(
    doc: str | None,
    confs: dict[str, dict] | None = None,
    default: str | None = None,
    overwrite: bool = False,
    weights: bool = False,
    cluster: str | None = None,
) -> argparse.ArgumentParser:
    """A stage's parser with the shared options: `--conf` (a name in `confs`, default `default` or
    the first) and `--options KEY=VALUE ...` overlaid on it; `--overwrite`; `--weights` and
    `--random_weights` (the matcher's weights, model.weights of its conf); `--cluster` and
    `--workers` (utils/cluster.py), `cluster` naming the work a cluster does (e.g. "match")."""
    out = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if confs is not None:
        default = default or next(iter(confs))
        out.conf_keys = frozenset(confs[default])
        out.add_argument("--conf", default=default, choices=list(confs))
        example = next(
            (f"{k}={v!r}" for k, v in confs[default].items() if isinstance(v, (int, float, str))), "key=value"
        )
        add_options(out, "--options", f"settings overlaid on the conf (e.g. {example})")
    if overwrite:
        out.add_argument("--overwrite", action="store_true", help="redo the work instead of reusing what is there")
    if weights:
        add_weights_arguments(out)
    if cluster is not None:
        ray_cluster.add_arguments(out, cluster)
    return out


def add_weights_arguments(parser: argparse.ArgumentParser) -> None:
    """`--weights` or `--random_weights`: model.weights of the matcher's conf (`conf_from_args`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--weights", help="our matcher's weights: a shipped name or a checkpoint path (default: the shipped ones)"
    )
    group.add_argument(
        "--random_weights",
        action="store_true",
        help="our matcher with random weights (meaningless matches, for tests)",
    )


def add_matcher_arguments(parser: argparse.ArgumentParser, confs: dict[str, dict], default: str) -> None:
    """A pipeline's matcher: `--matcher` (a name in `confs`, match_dense's, passed in because
    match_dense imports this module), `--matcher_options KEY=VALUE ...` overlaid on it, and the
    weights options; `conf_from_args(args, "matcher", "matcher_options")` is its conf."""
    parser.add_argument("--matcher", default=default, choices=list(confs))
    add_options(parser, "--matcher_options", "settings overlaid on the matcher's conf (e.g. max_kps=8192)")
    add_weights_arguments(parser)


def pipeline_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options as keyword arguments of a pipeline's `main`, each named as its parameter:
    those of `add_matcher_arguments` as one `matcher` conf, the others as they are."""
    kwargs = {k: v for k, v in vars(args).items() if k not in ("matcher_options", "weights", "random_weights")}
    return {**kwargs, "matcher": conf_from_args(args, "matcher", "matcher_options")}


def add_signature_arguments(
    parser: argparse.ArgumentParser,
    main: Callable[..., Any],
    skip: Sequence[str] = (),
    help: dict[str, str] | None = None,
    positional: Sequence[str] = (),
) -> list[str]:
    """One option per parameter of `main` (but "conf" and `skip`), named as the parameter, typed by
    its annotation (`Path`, `int`, `float`, `str`; a `bool` is a switch; `X | Sequence[X]` takes
    several), required where it has no default; the parameters in `positional` are positional
    arguments instead. Returns the parameters added."""
    hints = typing.get_type_hints(main)
    added = []
    for name, param in inspect.signature(main).parameters.items():
        if name in ("conf", *skip) or name in {a.dest for a in parser._actions}:
            continue
        kinds = [t for t in typing.get_args(hints[name]) or (hints[name],) if t is not type(None)]
        kwargs: dict[str, Any] = {"help": (help or {}).get(name)}
        if kinds[0] is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = kinds[0] if kinds[0] in (Path, int, float, str) else Path
            several = [
                t for t in kinds[1:] if typing.get_origin(t) in (Sequence, list) and typing.get_args(t) == (kinds[0],)
            ]
            if several:
                kwargs["nargs"] = "+"
            kwargs["required"] = param.default is inspect.Parameter.empty
            kwargs["default"] = None if kwargs["required"] else param.default
        if name in positional:
            kwargs.pop("required")  # argparse: a positional argument is required by being one
            parser.add_argument(name, **kwargs)
        else:
            parser.add_argument(f"--{name}", **kwargs)
        added.append(name)
    return added


def command(
    main: Callable[..., Any],
    doc: str | None,
    argv: list[str] | None,
    confs: dict[str, dict] | None = None,
    default: str | None = None,
    help: dict[str, str] | None = None,
    extend: Callable[[argparse.ArgumentParser], None] | None = None,
    conf_extra: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
    skip: Sequence[str] = (),
    weights: bool = False,
    cluster: str | None = None,
    positional: Sequence[str] = (),
) -> Any:
    """A stage's command line from its `main`: the shared options (`--conf` and `--options` where
    there are `confs`, the weights and cluster ones as asked) and one option per parameter
    (`add_signature_arguments`, those in `positional` as positional arguments), `extend` adding the
    stage's own; runs `main` with keyword arguments (`run`), the conf overlaid by the cluster
    options (as "cluster") and `conf_extra(args)`."""
    out = parser(doc, confs, default, weights=weights, cluster=cluster)
    if extend is not None:
        extend(out)
    names = add_signature_arguments(out, main, skip, help, positional)
    args = out.parse_args(argv)
    kwargs = {name: getattr(args, name) for name in names}
    if confs is not None:
        conf = conf_from_args(args)
        if cluster is not None:
            conf = overlay(conf, {"cluster": ray_cluster.cluster_conf(args)})
        kwargs["conf"] = overlay(conf, conf_extra(args)) if conf_extra else conf
    return run(main, **kwargs)


def conf_from_args(args: argparse.Namespace, name: str = "conf", options: str = "options") -> dict[str, Any]:
    """The conf the parsed options of `parser` give: {"name": args.<name>, **args.<options>}, with
    --weights / --random_weights as model.weights."""
    conf = {"name": getattr(args, name), **parse_options(getattr(args, options))}
    weights = "random" if getattr(args, "random_weights", False) else getattr(args, "weights", None)
    if weights is not None:
        conf["model"] = {**conf.get("model", {}), "weights": weights}
    return conf


def parse_options(items: list[str] | None) -> dict[str, Any]:
    """`["a=1", "b.c=False", "d=name"]` -> `{"a": 1, "b": {"c": False}, "d": "name"}` (values are
    Python literals, else strings; dotted keys nest)."""
    options: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep:
            raise InputError(f"option {item!r}: expected key=value")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = key.split(".")
        node = options
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return options


def main(argv: list[str] | None = None) -> None:
    """The console script: `sfm-reweight COMMAND [options]`, COMMAND one of `COMMANDS`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        usage = "usage: sfm-reweight COMMAND [options]  (sfm-reweight COMMAND --help for its options)\ncommands: "
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(usage + ", ".join(COMMANDS), file=sys.stdout if asked else sys.stderr)
        if not argv or argv[0] not in ("-h", "--help"):
            sys.exit(2 if not argv else f"error: unknown command {argv[0]!r}")
        return
    sys.argv[0] = f"sfm-reweight {argv[0]}"
    importlib.import_module(COMMANDS[argv[0]]).command(argv[1:])
