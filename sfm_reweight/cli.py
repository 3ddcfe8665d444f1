"""What the pipeline stages share: configuration by name, and the command line (logging to the
terminal, one-line errors for the project's errors, `key=value` option lists)."""

import ast
import copy
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .utils.errors import InputError, SfmReweightError


def deep_update(base: dict, update: dict) -> dict:
    """A copy of `base` with `update` merged in, nested dicts merged key by key."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def short_list(names: Sequence[str], limit: int = 5) -> str:
    """The first few names, comma-separated, for a summary line."""
    return ", ".join(list(names)[:limit]) + (", ..." if len(names) > limit else "")


def resolve_conf(confs: dict[str, dict], conf: str | dict) -> dict:
    """A stage configuration: a name in `confs`, or a dict overlaid on the one it names with
    `"name"` (default: the first of `confs`). Unknown top-level keys are an error; nested option
    dicts are merged and checked by their consumer (the matcher, pycolmap)."""
    if isinstance(conf, str):
        conf = {"name": conf}
    conf = dict(conf)
    name = conf.pop("name", next(iter(confs)))
    if name not in confs:
        raise InputError(f"unknown configuration {name!r}; expected one of {sorted(confs)}")
    unknown = sorted(set(conf) - set(confs[name]))
    if unknown:
        raise InputError(f"unknown configuration keys {unknown}; expected some of {sorted(confs[name])}")
    return {**deep_update(confs[name], conf), "name": name}


# The network's configuration resolvers raise KeyError for an unknown key or name and ValueError for
# a bad value: bad input too, though not of the project's error types (model/config.py,
# matcher.resolve_matcher_conf). (module, function) pairs; None: any function of the module.
CONF_RESOLVERS = (("sfm_reweight.model.config", None), ("sfm_reweight.matcher", "resolve_matcher_conf"))


def raised_by_conf_resolver(err: BaseException) -> bool:
    """Whether `err` was raised in one of `CONF_RESOLVERS` (its innermost frame)."""
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module, function = tb.tb_frame.f_globals.get("__name__"), tb.tb_frame.f_code.co_name
    return any(module == m and function == (f or function) for m, f in CONF_RESOLVERS)


def one_line(err: BaseException) -> str:
    """The message of `err` on one line (a KeyError's without the quotes its str adds)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and len(err.args) == 1 else str(err)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def run(main: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a stage's `main` with INFO logging; the project's errors (`SfmReweightError`: bad input,
    a checkpoint that does not load, an image or pair missing from a file, ...), a missing or
    unreadable file and a bad configuration key or value end the process with status 1 and a
    one-line `error: ...` message instead of a traceback."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        return main(*args, **kwargs)
    except (SfmReweightError, OSError) as e:
        sys.exit(f"error: {one_line(e)}")
    except (KeyError, ValueError) as e:
        if not raised_by_conf_resolver(e):
            raise
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
