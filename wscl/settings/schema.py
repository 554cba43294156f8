"""The trainer's JSON schema, generated from the one source of each setting: wscl/defaults.yaml (keys, types,
defaults), wscl/learners.yaml (methods and their hyper-parameters) and config.py (choices, ranges, presets).

The study schema (rules/config.schema.yaml) refers to it for every trainer section and for the method,
preset and fidelity enums; ``write_schemas`` puts both side by side so that Snakemake's ``validate``
resolves those references. The trainer's own validation (``config.resolve``) stays the authority: the
schema is a partial override, so it lists no ``required`` keys and no ``default`` (Snakemake would insert
defaults into the study).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wscl.settings.config import AUTO_OR_NUMBER, CHOICES, LEARNER_SPECS, METHODS, PATTERNS, PRESETS, RANGES, defaults
from wscl.core.safe_io import atomic_write_json, atomic_write_text

TRAINER_SCHEMA = "trainer.schema.json"
# Settings whose allowed values have a name of their own, for the study schema to refer to.
NAMED = {"training.method": "method", "preset": "preset", "fidelity": "fidelity"}


def _bounds(path: str, schema: dict) -> dict:
    low, high = RANGES.get(path, (None, None))
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _hparam_about(path: str) -> str | None:
    parts = path.split(".")
    if len(parts) == 3 and parts[0] == "training" and parts[1] in LEARNER_SPECS:
        return LEARNER_SPECS[parts[1]].get("hparams", {}).get(parts[2], {}).get("about")
    return None


def _value(path: str, default: Any) -> dict:
    if path in NAMED:
        schema: dict = {"$ref": f"#/$defs/{NAMED[path]}"}
    elif CHOICES.get(path) is not None:
        schema = {"enum": list(CHOICES[path])}
    elif path in PATTERNS:
        schema = {"type": "string", "pattern": f"^(?:{PATTERNS[path]})$"}
    elif path in AUTO_OR_NUMBER:
        schema = {"anyOf": [{"const": "auto"}, _bounds(path, {"type": "number"})]}
    elif isinstance(default, bool):
        schema = {"type": "boolean"}
    elif isinstance(default, int):
        schema = _bounds(path, {"type": "integer"})
    elif isinstance(default, float):
        schema = _bounds(path, {"type": "number"})
    else:
        schema = {"type": "string"}
    about = _hparam_about(path)
    schema["description"] = f"{about + '; ' if about else ''}default: {json.dumps(default)}"
    return schema


def _object(tree: dict, prefix: str = "") -> dict:
    properties = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        properties[key] = _object(value, path + ".") if isinstance(value, dict) and value else _value(path, value)
    return {"type": "object", "additionalProperties": False, "properties": properties}


def trainer_schema() -> dict:
    """JSON schema (draft 2020-12) of a trainer configuration: any subset of the keys of ``defaults()``."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "WSCL trainer settings",
              "description": "Settings of one training run; every key is optional (defaults: wscl/defaults.yaml "
                             "and wscl/learners.yaml).", **_object(defaults())}
    schema["$defs"] = {
        "method": {"enum": list(METHODS), "description": "a base learner of wscl/learners.yaml"},
        "preset": {"enum": list(PRESETS), "description": "a named study of wscl/config.py PRESETS"},
        "fidelity": {"enum": list(CHOICES["fidelity"]), "description": "reference = the authors' code incl. "
                     "spec §2b quirks; corrected = evident intent"},
    }
    return schema


def write_schemas(study_schema: str | Path, folder: str | Path) -> str:
    """Copy the study schema into ``folder`` beside a freshly generated trainer schema; the copy's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Under a cluster executor every job parses the workflow and rewrites these at once: atomic writes, so
    # that no process validates against a half-written schema.
    atomic_write_json(folder / TRAINER_SCHEMA, trainer_schema())
    copy = folder / Path(study_schema).name
    atomic_write_text(copy, Path(study_schema).read_text())
    return str(copy.resolve())
