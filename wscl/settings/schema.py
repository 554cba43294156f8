"""The trainer's JSON schema and config/README.md, generated from the one source of each setting:
wscl/settings/defaults.yaml (keys, types, defaults, ranges, choices, descriptions), the learners' files in
wscl/method/learners/ (methods and their hyper-parameters) and the presets' files in wscl/settings/presets/ (both
read by config.py through declarations.py).

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

import yaml

from wscl.core.safe_io import atomic_write_json, atomic_write_text
from wscl.settings.config import (
    AUTO_OR_NUMBER,
    CHOICES,
    METHODS,
    PATTERNS,
    PRESET_SPECS,
    PRESETS,
    RANGES,
    SECTIONS,
    SETTINGS,
    defaults,
    flatten,
)

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
    schema["description"] = f"{SETTINGS[path]['about']}; default: {json.dumps(default)}"
    return schema


def _object(tree: dict, prefix: str = "") -> dict:
    properties = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        properties[key] = _object(value, path + ".") if isinstance(value, dict) and value else _value(path, value)
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if prefix.rstrip(".") in SECTIONS:
        schema["description"] = SECTIONS[prefix.rstrip(".")]
    return schema


def trainer_schema() -> dict:
    """JSON schema (draft 2020-12) of a trainer configuration: any subset of the keys of ``defaults()``."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "WSCL trainer settings",
              **_object(defaults()),
              "description": "Settings of one training run; every key is optional (defaults: "
                             "wscl/settings/defaults.yaml and the DECLARATION of each file of wscl/method/learners/)."}
    schema["$defs"] = {
        "method": {"enum": list(METHODS), "description": "a base learner, one file of wscl/method/learners/"},
        "preset": {"enum": list(PRESETS), "description": "a named study, one file of wscl/settings/presets/"},
        "fidelity": {"enum": list(CHOICES["fidelity"]), "description": SETTINGS["fidelity"]["about"]},
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


# config/README.md: a hand-written introduction, then this marker, then tables generated from the study schema,
# defaults.yaml, the learners' and the presets' files (`make docs`; a test checks that they are current, and a
# changed declaration needs `make docs` to refresh them).
README_MARKER = "<!-- generated: do not edit below; make docs -->"
README_COMMAND = "make docs"


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def _allowed(path: str, default: Any) -> str:
    if CHOICES.get(path) is not None:
        return ", ".join(_code(c) for c in CHOICES[path])
    if path in PATTERNS:
        return f"matches {_code(PATTERNS[path])}"
    if path in RANGES:
        low, high = RANGES[path]
        kind = "a whole number" if isinstance(default, int) and not isinstance(default, bool) else "a number"
        span = (f"in [{low}, {high}]" if low is not None and high is not None else f"≥ {low}" if low is not None
                else f"≤ {high}" if high is not None else "")
        return f"`auto` or {kind} {span}".rstrip() if path in AUTO_OR_NUMBER else f"{kind} {span}".rstrip()
    if isinstance(default, bool):
        return "`true`, `false`"
    return "text"


def trainer_settings_markdown() -> str:
    """The table of every trainer setting: key, default, allowed values and what it does (defaults.yaml's
    `about`, each learner's DECLARATION's for its hyper-parameters)."""
    rows = ["| key | default | allowed | about |", "|---|---|---|---|"]
    sections_done = set()
    for path, default in flatten(defaults()).items():
        section = path.rpartition(".")[0]
        if section in SECTIONS and section not in sections_done:
            sections_done.add(section)
            rows.append(f"| `{section}.*` | | | {_cell(SECTIONS[section])} |")
        rows.append(f"| `{path}` | {_cell(_code(default))} | {_cell(_allowed(path, default))} | "
                    f"{_cell(SETTINGS[path]['about'])} |")
    return "\n".join(rows)


def presets_markdown() -> str:
    """The table of the presets (config.PRESET_SPECS, one file each in wscl/settings/presets/): name, role, what
    it sets and what it tests."""
    rows = ["| preset | role | sets | about |", "|---|---|---|---|"]
    for name, spec in PRESET_SPECS.items():
        sets = ", ".join(f"`{k}={v if isinstance(v, str) else json.dumps(v)}`"
                         for k, v in flatten(spec["settings"]).items()) or "nothing"
        rows.append(f"| `{name}` | {spec['role']} | {_cell(sets)} | {_cell(spec['about'])} |")
    return "\n".join(rows)


def _study_rows(node: dict, prefix: str, enums: dict[str, list]) -> list[str]:
    rows = []
    required = set(node.get("required", []))
    for name, sub in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "description" not in sub:
            raise ValueError(f"rules/config.schema.yaml: {path} has no description; config/README.md is written "
                             "from them")
        default = ("required" if name in required else _code(sub["default"]) if "default" in sub else "optional")
        about = sub["description"]
        ref = (sub.get("items") or {}).get("$ref") or sub.get("$ref") or ""
        if ref.startswith(f"{TRAINER_SCHEMA}#/$defs/"):
            about = f"{about.rstrip()}; one of {', '.join(_code(v) for v in enums[ref.rpartition('/')[2]])}"
        rows.append(f"| `{path}` | {_cell(default)} | {_cell(about)} |")
        if sub.get("type") == "array" and "items" in sub:
            rows += _study_rows(sub["items"], f"{path}[].", enums)
        elif isinstance(sub.get("additionalProperties"), dict):
            rows += _study_rows(sub["additionalProperties"], f"{path}.<name>.", enums)
        else:
            rows += _study_rows(sub, f"{path}.", enums)
    return rows


def study_keys_markdown(study_schema: dict) -> str:
    """The table of every key of a study, from the descriptions and defaults of rules/config.schema.yaml."""
    enums = {name: d["enum"] for name, d in trainer_schema()["$defs"].items()}
    return "\n".join(["| key | default | meaning |", "|---|---|---|", *_study_rows(study_schema, "", enums)])


def config_readme(current: str, study_schema: dict) -> str:
    """config/README.md as ``make docs`` writes it: ``current``'s text up to README_MARKER, then the tables of the
    study keys, the trainer settings and the presets."""
    if README_MARKER not in current:
        raise ValueError(f"config/README.md has no line {README_MARKER!r} to write below")
    intro = current.split(README_MARKER, 1)[0]
    parts = [
        intro + README_MARKER,
        "## Study keys\n\nFrom the descriptions and defaults of `rules/config.schema.yaml`.",
        study_keys_markdown(study_schema),
        "## Trainer settings\n\nEvery key a `trainer` section may set, from `wscl/settings/defaults.yaml` and, for "
        "each method's hyper-parameters (`training.<method>.<name>`), the `DECLARATION` of its file in "
        "`wscl/method/learners/`. Ranges are inclusive.",
        trainer_settings_markdown(),
        "## Presets\n\nThe named studies, one YAML file each in `wscl/settings/presets/`: `baseline` is what WSCL is "
        "compared with, each `wscl` preset is compared with it, each `ablation` with `full`. A preset's settings "
        "apply on top of the defaults; an explicit setting beats them.",
        presets_markdown(),
    ]
    return "\n\n".join(parts) + "\n"


def write_config_readme(readme: str | Path, study_schema: str | Path) -> bool:
    """Rewrite the generated part of ``readme`` from ``study_schema`` and the package; whether it changed."""
    readme = Path(readme)
    current = readme.read_text()
    text = config_readme(current, yaml.safe_load(Path(study_schema).read_text()))
    if text != current:
        atomic_write_text(readme, text)
    return text != current
