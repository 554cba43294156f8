"""Sweeps [ours]: any trainer setting as an axis of a study's grid.

A study's ``sweep`` (one mapping or a list of them) names trainer settings by their dotted keys and the values
to try, for the grid entries it ``match``es (by benchmark, buffer, method, preset, fidelity; all when absent)::

    sweep:
      match: {preset: full}
      settings:
        wscl.nrem.epochs: [1, 2, 4]
        wscl.plasticity.strengthen_frac: [0.01, 0.05, 0.2]
      design: grid              # the cross product; one_at_a_time: each setting alone around the run's value

The points are expanded with Snakemake's ``Paramspace`` (one wildcard, ``point``), which also names them:
``nrem_epochs~2,plasticity_strengthen_frac~0.05``. A point is an ordinary run coordinate: a matched
run becomes one run per point, in the folder ``<preset>@<point>``, with its MLflow parent, table rows and
figure labels; adding a value trains only the new points. A grid entry with ``tuned_from: full`` runs its
presets at the point selected for ``full`` (``<preset>@tuned``), so that ablations can be measured at a tuned
point (selection: study/selection.py).
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass

from wscl.settings.config import ConfigError, check_settings, flatten

DESIGNS = ("grid", "one_at_a_time")
MATCH_FIELDS = ("benchmark", "buffer", "method", "preset", "fidelity")
TUNED = "tuned"  # the point of a `tuned_from` grid entry: the one selected for that preset
SEP = "@"        # between a preset and its point in a run's folder and MLflow group


@dataclass(frozen=True)
class Sweep:
    settings: dict[str, tuple]  # dotted trainer key -> values, keys in sorted order
    match: dict
    design: str

    def applies(self, coordinates: dict) -> bool:
        return all(coordinates[field] == value for field, value in self.match.items())

    def points(self, around: dict) -> list[dict]:
        """The settings of every point; ``around``: the run's own value of each swept key (one_at_a_time)."""
        keys = list(self.settings)
        if self.design == "grid":
            return [dict(zip(keys, values)) for values in itertools.product(*self.settings.values())]
        out = [dict(around)]
        for key in keys:
            out += [{**around, key: value} for value in self.settings[key] if value != around[key]]
        return out


def variant(preset: str, point: str) -> str:
    """A run's folder and group name for its preset: ``full``, ``full@<point>``, ``no_nrem@tuned``."""
    return f"{preset}{SEP}{point}" if point else preset


def split_variant(name: str) -> tuple[str, str]:
    preset, _, point = name.partition(SEP)
    return preset, point


def point_names(points: list[dict]) -> list[str]:
    """Each point's name, as Snakemake's Paramspace writes an instance (``name~value`` joined by commas), a
    setting named by the last two parts of its key (``nrem_epochs~2,plasticity_strengthen_frac~0.05``; the
    table rows and figures name the full keys); object columns keep the values' own types (1 stays ``1``)."""
    import pandas as pd
    from snakemake.utils import Paramspace  # the workflow's own mechanism (the `workflow` extra)
    keys = sorted({key for point in points for key in point})
    short = {key: "_".join(key.split(".")[-2:]) for key in keys}
    if len(set(short.values())) < len(keys):  # two keys end alike: their whole paths
        short = {key: key.replace(".", "_") for key in keys}
    frame = pd.DataFrame([{short[k]: point[k] for k in keys} for point in points], dtype=object)
    space = Paramspace(frame, filename_params="*", param_sep="~", filename_sep=",", single_wildcard="point")
    return list(space.instance_patterns)


def parse_sweeps(config: dict, coordinate_keys: dict[str, str], preset_keys: list[str]) -> list[Sweep]:
    """The study's sweeps, validated: swept keys against the trainer's settings (a typo names the nearest),
    run coordinates and preset switches refused with where they belong, every value checked like a setting."""
    raw = config.get("sweep") or []
    out = []
    for i, entry in enumerate(raw if isinstance(raw, list) else [raw]):
        where = "sweep" if isinstance(raw, dict) else f"sweep[{i}]"
        out.append(_parse_one(entry, where, coordinate_keys, preset_keys))
    return out


def _parse_one(entry: dict, where: str, coordinate_keys: dict[str, str], preset_keys: list[str]) -> Sweep:
    from wscl.settings.config import defaults
    known = flatten(defaults())
    settings = entry.get("settings") or {}
    if not settings:
        raise ConfigError(f"{where}.settings is empty; name at least one trainer setting and its values")
    for key, values in settings.items():
        if key in coordinate_keys:
            raise ConfigError(f"{where}.settings.{key} is a run coordinate, not a setting to sweep; set it through "
                              f"{coordinate_keys[key]}")
        _refuse_data_key(key, where)
        one_preset = "preset" in (entry.get("match") or {})
        if key in preset_keys and (isinstance(known.get(key), (bool, str)) or not one_preset):
            # a component's on/off switch is what presets compare; a preset's size (e.g. wscl.stm.size) may be
            # swept within one preset, as an `overrides` entry matching it may set it
            raise ConfigError(f"{where}.settings.{key} is switched by the presets; compare presets in a grid entry's "
                              "`presets` (e.g. the ablations of full) instead, or sweep a size the presets set "
                              "with `match: {preset: ...}`")
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else "; see config/README.md for the trainer's settings"
            raise ConfigError(f"{where}.settings.{key} is not a trainer setting{hint}")
        if not isinstance(values, list) or not values or len(set(map(repr, values))) != len(values):
            raise ConfigError(f"{where}.settings.{key} must be a list of distinct values, e.g. [1, 2, 4]")
        for value in values:
            if isinstance(value, str) and any(c in value for c in "/,~@ "):
                raise ConfigError(f"{where}.settings.{key}: the value {value!r} would not fit in a folder name "
                                  "(no / , ~ @ or spaces)")
            try:
                check_settings(_nested(key, value))
            except ConfigError as exc:
                raise ConfigError(f"{where}.settings: {exc}") from None
    design = entry.get("design", "grid")
    if design not in DESIGNS:
        raise ConfigError(f"{where}.design={design!r} is not allowed; choose one of {', '.join(DESIGNS)}")
    match = entry.get("match") or {}
    for field in match:
        if field not in MATCH_FIELDS:
            raise ConfigError(f"{where}.match.{field} is not a run coordinate; match on {', '.join(MATCH_FIELDS)}")
    # keys in sorted order: a point's name and the order of the points must not depend on how the study's
    # mapping was ordered (YAML for Snakemake, sorted JSON for the jobs)
    return Sweep({k: tuple(settings[k]) for k in sorted(settings)}, dict(match), design)


DATA_SECTIONS = ("scenario", "dataset")  # what the points must share: the tasks, their images, the tuning split


def _refuse_data_key(key: str, where: str) -> None:
    """A swept ``scenario.*`` or ``dataset.*`` key would give each point other tasks, images or tuning images,
    so that selection would compare the points on different data."""
    section = key.split(".", 1)[0]
    if section in DATA_SECTIONS:
        raise ConfigError(f"{where}.settings.{key} changes the {section} (the tasks, their images or the tuning "
                          "split), so the points would be compared on different images; set it for every run in "
                          "the study's or a benchmark's `trainer` section instead (config/README.md)")


def _nested(dotted: str, value) -> dict:
    tree: dict = value
    for part in reversed(dotted.split(".")):
        tree = {part: tree}
    return tree


def as_overrides(settings: dict) -> dict:
    """A point's dotted settings as a nested trainer section."""
    from wscl.settings.config import deep_merge
    tree: dict = {}
    for key, value in settings.items():
        tree = deep_merge(tree, _nested(key, value))
    return tree
