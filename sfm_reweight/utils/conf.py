"""Named configurations: the one mechanism behind the network's, the matcher's, every stage's and
the training recipes' `confs`.

A configuration is a dict of defaults; a user's configuration is a name in a `confs` dict, or a dict
overlaid on the one it names with "name". Every key at every level must exist in the defaults
(`ConfError` names the unknown key, where it is, and the valid keys), except inside `Options`: the
option dicts of a library (pycolmap's), whose keys that library checks.
"""

import copy

from .errors import SfmReweightError


class ConfError(SfmReweightError, ValueError):
    """An unknown configuration name or key, or a value of the wrong kind; the message names it."""


class Options(dict):
    """A library's option dict inside a configuration (e.g. pycolmap's): merged without key checks."""


def overlay(base: dict, update: dict) -> dict:
    """A copy of `base` with `update` merged in, nested dicts key by key, without checks (library options)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = type(out[key])(overlay(out[key], value))
        else:
            out[key] = copy.deepcopy(value)
    return out


def merge(base: dict, update: dict, where: str = "configuration") -> dict:
    """A copy of `base` with `update` merged in, strictly: every key of `update` must be one of
    `base`'s, at every level (`Options` excepted), and a section stays a section (a default of None
    takes either); `where` names the level in errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in out:
            raise ConfError(f"unknown key {key!r} in {where}; expected one of {sorted(out)}")
        if isinstance(out[key], Options):
            if not isinstance(value, dict):
                raise ConfError(f"{where}.{key}: expected a dict of options, got {value!r}")
            out[key] = Options(overlay(out[key], value))
        elif isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ConfError(f"{where}.{key}: expected a dict of settings, got {value!r}")
            out[key] = merge(out[key], value, f"{where}.{key}")
        elif isinstance(value, dict) and out[key] is not None:
            raise ConfError(f"{where}.{key}: expected a value like {out[key]!r}, got a dict")
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve(confs: dict[str, dict], conf: str | dict, default: str | None = None, what: str = "configuration") -> dict:
    """The configuration `conf` names (a name in `confs`, or a dict overlaid on `confs[conf["name"]]`,
    `default` when it names none, the first of `confs` without a default), with its "name"; `what`
    says which kind in errors."""
    update = {"name": conf} if isinstance(conf, str) else dict(conf)
    name = update.pop("name", default or next(iter(confs)))
    if name not in confs:
        raise ConfError(f"unknown {what} {name!r}; expected one of {sorted(confs)}")
    return {**merge(confs[name], update, f"{what} {name}"), "name": name}
