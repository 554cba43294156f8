"""A run's configuration: the declarations, one builder of named layers, validation, and the frozen result.

``build`` applies the layers in LAYER_KINDS order (later wins): the defaults, the preset, the benchmark's declared
task structure, the study, the sweep point, the tuned selection, a config file, JSON and ``--set``. An explicit
setting therefore always beats a preset (docs/method.md §2b.5). The result is a ``Config``: frozen, typed, each
section a dataclass generated from defaults.yaml and the learners' declarations, read as ``cfg.training.lr``.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wscl.core.errors import ConfigError
from wscl.settings.declarations import (
    PRESET_ROLES,
    learner_declarations,
    learner_file,
    preset_declarations,
    preset_file,
)

# The presets, one registry: each named study's overrides of the defaults (`settings`), the claim it tests
# (`about`, labelled), its `role` in the report (declarations.PRESET_ROLES) and its `colour` in every figure (Paul
# Tol's colour-blind safe "muted" scheme). Each is one YAML file of wscl/settings/presets/ (name = the file's
# stem), in role order, then by name. The report's findings, the figures, validation, the schema and the
# workflow's wildcards follow it: a new ablation is one file there (then `make docs`).
PRESET_SPECS: dict[str, dict[str, Any]] = preset_declarations()
# Name -> overrides of the defaults.
PRESETS: dict[str, dict[str, Any]] = {name: spec["settings"] for name, spec in PRESET_SPECS.items()}
NO_COLOUR = "#777777"  # a row whose preset has no colour (none in the registry)


def presets_of(role: str) -> tuple[str, ...]:
    """The presets of one role, in the registry's order (read when called, so the registry can grow)."""
    if role not in PRESET_ROLES:
        raise ValueError(f"unknown preset role {role!r}; roles: {', '.join(PRESET_ROLES)}")
    return tuple(name for name, spec in PRESET_SPECS.items() if spec["role"] == role)


def preset_colour(name: str) -> str:
    return PRESET_SPECS.get(name, {}).get("colour", NO_COLOUR)


def _package_yaml(name: str) -> dict:
    return yaml.safe_load(resources.files("wscl.settings").joinpath(name).read_text())


# The base learners and the hyper-parameters each owns (training.<method>.<name>), declared once: each module of
# wscl/method/learners/ declares its own (DECLARATION = {...}; the method = the file's stem). The settings layer
# never imports the method layer, so declarations.py reads each DECLARATION from the file's source, statically
# (ast.literal_eval), without importing the module; ordered by its `order`.
LEARNER_SPECS: dict[str, dict[str, Any]] = learner_declarations()
METHODS = tuple(LEARNER_SPECS)

# Every setting, declared once in defaults.yaml as {default, range, choices, pattern, about}; a section may have
# an `about` of its own. A preset's and a method's choices come from the presets' and the learners' files.
SETTING_FIELDS = ("default", "range", "choices", "pattern", "about")
DERIVED_CHOICES = {"preset": tuple(PRESETS), "training.method": METHODS}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_settings(tree: dict, prefix: str, settings: dict, sections: dict, source: str = "defaults.yaml") -> None:
    for key, node in tree.items():
        path = f"{prefix}{key}"
        if key == "about" and isinstance(node, str):
            sections[prefix.rstrip(".")] = node
        elif not isinstance(node, dict):
            raise ValueError(f"{source}: {path} must be a setting {{default, ..., about}} or a section")
        elif "default" in node:
            unknown = set(node) - set(SETTING_FIELDS)
            if unknown:
                raise ValueError(f"{source}: {path} has unknown fields {sorted(unknown)}; "
                                 f"a setting has {', '.join(SETTING_FIELDS)}")
            if not node.get("about"):
                raise ValueError(f"{source}: {path} has no `about`")
            numeric = _is_number(node["default"]) or (node["default"] == "auto" and "range" in node)
            if numeric != ("range" in node):
                raise ValueError(f"{source}: {path}: every number has a `range` and nothing else does")
            settings[path] = dict(node)
        else:
            _read_settings(node, path + ".", settings, sections, source)


def _settings() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    settings: dict[str, dict[str, Any]] = {}
    sections: dict[str, str] = {}
    _read_settings(_package_yaml("defaults.yaml"), "", settings, sections)
    for path, choices in DERIVED_CHOICES.items():
        settings[path]["choices"] = list(choices)
    # Each learner's hyper-parameters follow the training section's own settings.
    last = max(i for i, path in enumerate(settings) if path.startswith("training."))
    items = list(settings.items())
    hparams: dict[str, dict[str, Any]] = {}
    for method, spec in LEARNER_SPECS.items():
        if any(path == f"training.{method}" or path.startswith(f"training.{method}.") for path in settings):
            raise ValueError(f"{learner_file(method)}: the method's name {method!r} is a key of training in "
                             "defaults.yaml, where its hyper-parameters would go; rename the file")
        _read_settings({method: spec["hparams"]}, "training.", hparams, {}, learner_file(method))
        if spec["hparams"]:
            sections[f"training.{method}"] = f"hyper-parameters of {method}: {spec['about']}"
    return dict(items[: last + 1] + list(hparams.items()) + items[last + 1:]), sections


# Setting path -> its declaration (learners' hyper-parameters included); section path -> its `about`.
SETTINGS, SECTIONS = _settings()


def _check_preset_settings() -> None:
    """Each preset's settings are trainer settings (run once this module has loaded: see its end)."""
    for name, spec in PRESET_SPECS.items():
        if "preset" in spec["settings"]:
            raise ValueError(f"{preset_file(name)}: settings set `preset`; a preset's settings are the others")
        try:
            check_settings(spec["settings"])
        except ConfigError as exc:
            raise ValueError(f"{preset_file(name)}: its settings are not trainer settings: {exc}") from None
# Allowed values of every setting that is not free-form: choices (None: a free-form string with a PATTERN).
CHOICES = {path: (tuple(s["choices"]) if "choices" in s else None) for path, s in SETTINGS.items()
           if "choices" in s or "pattern" in s}
# Free-form strings with a shape: regular expressions a value must match in full.
PATTERNS = {path: s["pattern"] for path, s in SETTINGS.items() if "pattern" in s}
# (low, high) of every number; None = unbounded.
RANGES = {path: tuple(s["range"]) for path, s in SETTINGS.items() if "range" in s}
# Settings that take either "auto" or a number in their range.
AUTO_OR_NUMBER = {path for path, s in SETTINGS.items() if s["default"] == "auto" and "range" in s}


@functools.lru_cache(maxsize=1)
def _defaults_tree() -> dict:
    tree: dict = {}
    for path, setting in SETTINGS.items():
        *sections, key = path.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[key] = setting["default"]
    return tree


def defaults() -> dict:
    """The trainer's defaults: each setting's `default` in wscl/settings/defaults.yaml, with each learner's
    hyper-parameters under training (read once per process; each call returns its own copy to change)."""
    return copy.deepcopy(_defaults_tree())


class Section:
    """A frozen section of the configuration: each setting an attribute, typed as declared in defaults.yaml."""

    def to_dict(self) -> dict:
        """The section as plain nested dicts (what metrics.json, the checkpoint and MLflow record)."""
        return dataclasses.asdict(self)


def _setting_type(setting: dict) -> Any:
    """The Python type a setting's values have: its default's, with the types of its choices ("auto")."""
    kinds = {type(setting["default"])} | {type(c) for c in setting.get("choices", ())}
    if setting["default"] == "auto" and "range" in setting:
        kinds |= {float, int}
    return functools.reduce(operator.or_, sorted(kinds, key=lambda k: k.__name__))


def _section_class(name: str, tree: dict, prefix: str) -> type:
    """A frozen dataclass for one section of the defaults' tree, its subsections dataclasses of their own."""
    fields = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        kind = _section_class(key, value, path + ".") if isinstance(value, dict) else _setting_type(SETTINGS[path])
        fields.append((key, kind))
    title = "".join(part.title() for part in name.split("_"))
    return dataclasses.make_dataclass(title or "Config", fields, bases=(Section,), frozen=True)


def _build_sections(cls: type, tree: dict):
    values = {}
    for f in dataclasses.fields(cls):
        value = tree[f.name]
        values[f.name] = _build_sections(f.type, value) if dataclasses.is_dataclass(f.type) else value
    return cls(**values)


class Config(_section_class("", _defaults_tree(), "")):
    """A run's resolved configuration, frozen: ``cfg.training.lr``; built only by ``build``."""

    @classmethod
    def from_tree(cls, tree: dict) -> Config:
        return _build_sections(cls, tree)

    def with_settings(self, settings: dict, name: str) -> Config:
        """This configuration with ``settings`` (named ``name`` in messages) on top, built and validated again."""
        return build([Layer("config file", self.to_dict(), "the resolved configuration"), Layer("set", settings, name)])


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def parse_set(assignments: list[str]) -> dict:
    """Turn ``["a.b=1", "c=x"]`` into a nested override dict (values parsed as YAML)."""
    tree: dict = {}
    for item in assignments or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. training.lr=0.1")
        key, raw = item.split("=", 1)
        node = tree
        parts = key.strip().split(".")
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(parts[: depth + 1])
                raise ConfigError(f"--set {item!r}: {section!r} was set to a single value by an earlier --set; "
                                  "set its keys one by one instead")
        node[parts[-1]] = _set_value(item, raw)
    return tree


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _set_value(item: str, raw: str) -> Any:
    if raw == "":
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_one_line(exc)}); quote a text value, "
                          "e.g. --set 'dataset.name=\"my data\"'") from None


def _check_keys(user: dict, reference: dict, prefix: str = "") -> None:
    for key, value in user.items():
        path = f"{prefix}{key}"
        if key not in reference:
            valid = [f"{prefix}{k}" for k in reference]
            near = difflib.get_close_matches(path, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys here: {', '.join(valid)}"
            raise ConfigError(f"unknown config key {path!r}{hint}")
        if isinstance(reference[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a mapping with keys {', '.join(reference[key])}")
            _check_keys(value, reference[key], path + ".")
        elif isinstance(value, dict):
            raise ConfigError(f"config key {path!r} is a single setting, not a mapping; "
                              f"it has no key {next(iter(value), '')!r}")


def _check_value(path: str, value: Any, default: Any) -> None:
    if path in AUTO_OR_NUMBER:
        if value == "auto":
            return
        default = 0.0
    if path in CHOICES and CHOICES[path] is not None:
        allowed = CHOICES[path]
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ConfigError(f"{path}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{path}={value!r} must be true or false")
        return
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}={value!r} must be a number")
        if isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"{path}={value!r} must be a whole number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}={value!r} must be a finite number")
        low, high = RANGES.get(path, (None, None))
        if (low is not None and value < low) or (high is not None and value > high):
            span = f"[{low}, {'inf' if high is None else high}]"
            raise ConfigError(f"{path}={value!r} is out of range; allowed range is {span}")
        return
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{path}={value!r} must be a string")


def _check_consistency(cfg: dict) -> None:
    p = cfg["wscl"]["plasticity"]
    if p["strengthen_frac"] + p["weaken_frac"] > 1.0:
        raise ConfigError("wscl.plasticity.strengthen_frac + wscl.plasticity.weaken_frac must not exceed 1.0 "
                          f"(got {p['strengthen_frac']} + {p['weaken_frac']})")
    _check_held_out_sizes(cfg)
    device = str(cfg["runtime"]["device"])
    if not re.fullmatch(PATTERNS["runtime.device"], device):
        raise ConfigError(f"runtime.device={device!r} is not allowed; choose auto, cpu, cuda or cuda:N")


def _check_held_out_sizes(cfg: dict) -> None:
    """The freezing trial scores on held-out images: a mode needs the set it scores on."""
    sc, fr = cfg["scenario"], cfg["wscl"]["freezing"]
    if not fr["enabled"]:
        return
    if sc["hold_out"] is False:
        raise ConfigError("wscl.freezing.enabled is true but scenario.hold_out is false: the freezing trial scores "
                          "on held-out images; set scenario.hold_out to auto or true")
    if fr["mode"] in ("training", "training_and_buff") and sc["val_per_task"] == 0:
        raise ConfigError(f"wscl.freezing.mode={fr['mode']} scores on the validation split, but "
                          "scenario.val_per_task is 0; raise it or use mode buffer")
    if fr["mode"] in ("buffer", "training_and_buff") and sc["freeze_buffer_per_task"] == 0:
        raise ConfigError(f"wscl.freezing.mode={fr['mode']} scores on the freezing buffer, but "
                          "scenario.freeze_buffer_per_task is 0; raise it or use mode training")


def check_settings(tree: dict, where: str = "") -> None:
    """Keys and values of a partial configuration (one layer, e.g. a study's trainer section), before any merge;
    ``where`` names the layer in the message."""
    base = defaults()
    try:
        _check_keys(tree, base)
        reference = flatten(base)
        for path, value in flatten(tree).items():
            if not isinstance(value, dict):  # an empty section
                _check_value(path, value, reference[path])
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}" if where else str(exc)) from None


# The layers a run's configuration is built from, in the order they apply (later wins): the declared defaults,
# the preset's settings, the benchmark's declared task structure, the study's trainer sections (study-wide, the
# benchmark's entry, its overrides), the sweep point, the point chosen on the tuning split, a config file, JSON
# and --set. The preset is the one named by the last layer that names one.
LAYER_KINDS = ("defaults", "preset", "benchmark", "study", "sweep point", "tuned selection", "config file", "json",
               "set")


@dataclass(frozen=True)
class Layer:
    """One named source of settings: ``kind`` is one of LAYER_KINDS, ``name`` what the messages call it."""
    kind: str
    settings: dict
    name: str = ""

    def __post_init__(self):
        if self.kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {self.kind!r}; kinds: {', '.join(LAYER_KINDS)}")
        if not isinstance(self.settings, dict):
            raise ConfigError(f"{self.label}: settings must be a mapping, not {type(self.settings).__name__}")

    @property
    def label(self) -> str:
        return self.name or self.kind


def build(layers: list[Layer], declared: Callable[[str], dict] | None = None) -> Config:
    """The one builder of a run's configuration: each layer checked on its own (a merge would hide
    `training: 5`), applied in LAYER_KINDS order after the defaults and the preset, validated and resolved once.
    ``declared(dataset name)`` gives a benchmark's declared task structure (the data layer's registry), which
    then applies as the `benchmark` layer whichever route the layers came by."""
    base = defaults()
    for layer in layers:
        if layer.kind in ("defaults", "preset"):  # both come from the declarations, in their place
            raise ValueError(f"{layer.label}: a `{layer.kind}` layer is the declarations' own; give settings as a "
                             f"later kind ({', '.join(LAYER_KINDS[2:])})")
        check_settings(layer.settings, layer.label)
    ordered = sorted(layers, key=lambda layer: LAYER_KINDS.index(layer.kind))
    user: dict = {}
    for layer in ordered:
        user = deep_merge(user, layer.settings)
    if declared is not None and not any(layer.kind == "benchmark" for layer in layers):
        dataset = user.get("dataset", {}).get("name", base["dataset"]["name"])
        ordered.insert(0, Layer("benchmark", declared(dataset), f"benchmark {dataset}"))
        user = deep_merge(ordered[0].settings, user)  # the declaration comes before every later layer
    preset = user.get("preset", base["preset"])
    if not isinstance(preset, str) or preset not in PRESETS:
        _check_value("preset", preset, base["preset"])
    cfg = deep_merge(deep_merge(base, PRESETS[preset]), user)
    reference = flatten(base)
    for path, value in flatten(cfg).items():
        _check_value(path, value, reference[path])
    _resolve_plain_baseline(cfg)
    _check_consistency(cfg)
    return Config.from_tree(cfg)


def resolve(file_config: dict | None = None, sets: dict | None = None) -> Config:
    """``build`` of a config file's settings and --set values (the settings alone: no benchmark declaration)."""
    return build([Layer("config file", file_config or {}), Layer("set", sets or {})])


def is_plain_baseline(cfg: dict) -> bool:
    """A run without any WSCL component: the authors' plain sequential datasets [code]."""
    w = cfg["wscl"]
    return not (w["freezing"]["enabled"] or w["rem"]["source"] != "none" or w["nrem"]["enabled"]
                or w["plasticity"]["enabled"] or w["stm"]["size"] > 0)


def _resolve_plain_baseline(cfg: dict) -> None:
    """[code] Plain baselines hold nothing out and keep heads in class order; WSCL runs hold out the
    validation split and freezing buffer and assign heads greedily. ``auto`` picks accordingly."""
    sc = cfg["scenario"]
    plain = is_plain_baseline(cfg)
    if sc["hold_out"] == "auto":
        sc["hold_out"] = not plain
    if sc["head_assignment"] == "auto":
        sc["head_assignment"] = "class_order" if plain else "greedy"


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "save it as UTF-8 YAML") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {_one_line(exc)}; fix the line it names "
                          "(config/README.md lists the keys)") from None
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r} cannot be read ({exc.strerror}); check its permissions") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return data


def fingerprint(cfg: Config, runtime: dict) -> str:
    """A hash of everything that changes the numbers: the settings (runtime display settings excluded) and
    the resolved device, precision, memory format and determinism (``auto`` resolves per machine)."""
    relevant = {k: v for k, v in cfg.to_dict().items() if k != "runtime"}
    relevant["runtime"] = runtime
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


# A preset file with settings the trainer refuses stops the package loading, naming the file.
_check_preset_settings()
