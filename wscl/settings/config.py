"""Run configuration: defaults, presets, overrides and validation.

Resolution order (later wins): package defaults -> preset -> config file -> ``--set``.
An explicit setting therefore always beats a preset (spec §2b.5).
"""
from __future__ import annotations

import copy
import difflib
import functools
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from wscl.core.errors import ConfigError


# Named studies as overrides of the `wscl` section (spec §2, "Ablations"). Two WSCLs exist:
#   authors  [code]  what the authors' public code runs: dynamic freezing, dreams interleaved into every
#                    wake epoch through the free heads, greedy head assignment; no STM, NREM, plasticity
#                    or STM->LTM merge. The paper's reported numbers came from this code.
#   full     [paper] the paper's described method: the above plus STM, NREM, plasticity and the merge,
#                    with this project's rules for them [ours]. The ablation presets are defined on it.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {"wscl": {"freezing": {"enabled": False}, "stm": {"size": 0}, "nrem": {"enabled": False},
                      "plasticity": {"enabled": False}, "rem": {"source": "none"}}},
    "authors": {"wscl": {"stm": {"size": 0}, "nrem": {"enabled": False}, "plasticity": {"enabled": False}}},
    "full": {},
    "no_freezing": {"wscl": {"freezing": {"enabled": False}}},
    "no_nrem": {"wscl": {"nrem": {"enabled": False}}},
    "no_plasticity": {"wscl": {"plasticity": {"enabled": False}}},
    "no_rem": {"wscl": {"rem": {"source": "none"}}},
    "rem_noise": {"wscl": {"rem": {"source": "noise"}}},
    # Buffer-free Wake+REM: no long- or short-term memory, hence no replay, NREM or plasticity.
    "wake_rem": {"training": {"buffer_size": 0},
                 "wscl": {"stm": {"size": 0}, "nrem": {"enabled": False}, "plasticity": {"enabled": False}}},
}



def _package_yaml(name: str) -> dict:
    return yaml.safe_load(resources.files("wscl.settings").joinpath(name).read_text())


# The base learners and the hyper-parameters each owns (training.<method>.<name>), declared once.
LEARNER_SPECS: dict[str, dict[str, Any]] = _package_yaml("learners.yaml")
METHODS = tuple(LEARNER_SPECS)

# Allowed values of every setting that is not free-form: choices or (low, high) ranges.
CHOICES = {
    "preset": tuple(PRESETS),
    "fidelity": ("reference", "corrected"),
    "scenario.head_assignment": ("auto", "greedy", "hungarian", "class_order"),
    "scenario.hold_out": ("auto", True, False),
    "scenario.augment": ("auto", True, False),
    "training.method": METHODS,
    "wscl.freezing.mode": ("training", "buffer", "training_and_buff"),
    "wscl.rem.source": ("aux", "noise", "none"),
    "wscl.rem.schedule": ("interleaved", "staged"),
    "runtime.device": None,  # a pattern (PATTERNS); whether the device exists is checked at run time
    "runtime.bf16": ("auto", True, False),
    "runtime.channels_last": ("auto", True, False),
    "runtime.deterministic": ("auto", True, False),
    "runtime.on_training_failure": ("warn", "stop"),
}
# Free-form strings with a shape: regular expressions a value must match in full.
PATTERNS = {"runtime.device": r"auto|cpu|cuda(:\d+)?"}
RANGES = {
    "seed": (0, 2**31 - 1),
    "dataset.mmap_above_mb": (0, None),
    "dataset.synthetic.classes": (2, None),
    "dataset.synthetic.dream_classes": (0, None),
    "dataset.synthetic.train_per_class": (1, None),
    "dataset.synthetic.test_per_class": (1, None),
    "dataset.synthetic.dream_per_class": (1, None),
    "dataset.synthetic.size": (8, 512),
    "dataset.synthetic.channels": (1, 4),
    "dataset.synthetic.noise": (0.0, 255.0),
    "dataset.synthetic.contrast": (0.0, 127.5),
    "dataset.synthetic.seed": (0, 2**31 - 1),
    "scenario.n_tasks": (1, None),
    "scenario.classes_per_task": (1, None),
    "scenario.val_per_task": (0, None),
    "scenario.freeze_buffer_per_task": (0, None),
    "scenario.train_per_class": (0, None),
    "scenario.test_per_class": (0, None),
    "wscl.rem.dream_per_class": (0, None),
    "model.width": (1, 1024),
    "training.epochs": (1, None),
    "training.batch_size": (1, None),
    "training.replay_batch_size": (1, None),
    "training.lr": (0.0, 10.0),
    "training.buffer_size": (0, None),
    **{f"training.{method}.{name}": tuple(hp["range"]) for method, spec in LEARNER_SPECS.items()
       for name, hp in spec.get("hparams", {}).items()},
    "wscl.stm.size": (0, None),
    "wscl.nrem.epochs": (0, None),
    "wscl.nrem.stm_fraction": (0.0, 1.0),
    "wscl.plasticity.strengthen_frac": (0.0, 1.0),
    "wscl.plasticity.strengthen": (0.0, None),
    "wscl.plasticity.weaken_frac": (0.0, 1.0),
    "wscl.plasticity.weaken": (0.0, 1.0),
    "wscl.rem.epochs": (0, None),
    "wscl.rem.noise_per_class": (1, None),
    "runtime.eval_batch_size": (1, None),
    "runtime.nan_check_every": (1, None),
    "runtime.loss_explosion_factor": (1.0, None),
    "runtime.collapse_share": (0.5, 1.0),
    "runtime.checkpoint_every_minutes": (0.0, None),
    "runtime.mlflow_system_metrics_every": (0, None),
}


def learner_defaults() -> dict[str, dict[str, Any]]:
    """``{method: {name: default}}`` for every learner that has hyper-parameters."""
    return {method: {name: hp["default"] for name, hp in spec["hparams"].items()}
            for method, spec in LEARNER_SPECS.items() if spec.get("hparams")}


@functools.lru_cache(maxsize=1)
def _defaults_tree() -> dict:
    tree = _package_yaml("defaults.yaml")
    tree["training"].update(learner_defaults())
    return tree


def defaults() -> dict:
    """The trainer's defaults: wscl/defaults.yaml with each learner's hyper-parameters under training
    (parsed once per process; each call returns its own copy to change)."""
    return copy.deepcopy(_defaults_tree())


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
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return tree


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


# Settings that take either "auto" or a number in their range.
AUTO_OR_NUMBER = {"wscl.nrem.stm_fraction"}


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


def check_settings(tree: dict) -> None:
    """Keys and values of a partial configuration (e.g. a study's trainer section), before any merge."""
    base = defaults()
    _check_keys(tree, base)
    reference = flatten(base)
    for path, value in flatten(tree).items():
        if not isinstance(value, dict):  # an empty section
            _check_value(path, value, reference[path])


def resolve(file_config: dict | None = None, sets: dict | None = None) -> dict:
    """Build the resolved configuration: defaults, then preset, then file, then --set values."""
    base = defaults()
    user = deep_merge(file_config or {}, sets or {})
    _check_keys(user, base)
    preset = user.get("preset", base["preset"])
    if preset not in PRESETS:
        _check_value("preset", preset, base["preset"])
    cfg = deep_merge(deep_merge(base, PRESETS[preset]), user)
    reference = flatten(base)
    for path, value in flatten(cfg).items():
        _check_value(path, value, reference[path])
    _resolve_plain_baseline(cfg)
    _check_consistency(cfg)
    return cfg


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
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of settings")
    return data


def fingerprint(cfg: dict, runtime: dict) -> str:
    """A hash of everything that changes the numbers: the settings (runtime display settings excluded) and
    the resolved device, precision, memory format and determinism (``auto`` resolves per machine)."""
    relevant = {k: v for k, v in cfg.items() if k != "runtime"}
    relevant["runtime"] = runtime
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
