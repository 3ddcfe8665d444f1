"""What the pipeline stages share: configuration by name, and the command line (logging to the
terminal, one-line errors for the project's errors, `key=value` option lists)."""

import ast
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .utils.conf import resolve
from .utils.errors import InputError, SfmReweightError


def short_list(names: Sequence[str], limit: int = 5) -> str:
    """The first few names, comma-separated, for a summary line."""
    return ", ".join(list(names)[:limit]) + (", ..." if len(names) > limit else "")


def resolve_conf(confs: dict[str, dict], conf: str | dict) -> dict:
    """A stage configuration: a name in `confs`, or a dict overlaid on the one it names with
    `"name"` (default: the first of `confs`); strict at every level (utils/conf.py)."""
    return resolve(confs, conf, next(iter(confs)), "configuration")


def one_line(err: BaseException) -> str:
    """The message of `err` on one line."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())


def run(main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a stage's `main` with INFO logging; the project's errors (`SfmReweightError`: bad input,
    a bad configuration name, key or value, a checkpoint that does not load, an image or pair
    missing from a file, ...) and a missing or unreadable file end the process with status 1 and a
    one-line `error: ...` message instead of a traceback."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        return main(*args, **kwargs)
    except (SfmReweightError, OSError) as e:
        sys.exit(f"error: {one_line(e)}")


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
