"""What is declared in a file of its own, read from the files: the base learners (``DECLARATION = {...}`` in
each module of wscl/method/learners/) and the presets (one YAML file each in wscl/settings/presets/). Adding a
learner or a preset is adding one file; config.py builds its registries from what these functions return.

The settings layer never imports the method layer (tests/test_layers.py), so a learner's declaration is read
statically: its module's source is parsed (``ast``) and its one ``DECLARATION`` assignment evaluated as a
literal (``ast.literal_eval``); the module is never imported here. A file's name (its stem) is the learner's
method, or the preset's name. A malformed declaration stops the package loading with a ValueError naming the
file, as a malformed defaults.yaml does.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml

PACKAGE = Path(__file__).resolve().parents[1]
# The folders listed: the learners' modules (by path in the package, not imported) and the presets' files.
LEARNERS_FOLDER = PACKAGE / "method" / "learners"
PRESETS_FOLDER = Path(__file__).resolve().parent / "presets"

# A name that is a method or a preset: a run folder's part, a wildcard's value and a settings key.
NAME = re.compile(r"[a-z][a-z0-9_]*")
LEARNER_FIELDS = ("about", "order", "hparams")
# A preset's `role` in the report (`baseline`: what WSCL is compared with; `wscl`: a WSCL, compared with `baseline`
# of the same method and fidelity; `ablation`: one switch of `full`, compared with `full`), in the registry's order.
PRESET_ROLES = ("baseline", "wscl", "ablation")
PRESET_FIELDS = ("role", "colour", "about", "settings")
COLOUR = re.compile(r"#[0-9A-Fa-f]{6}")


def shown(path: Path) -> str:
    """A declaration file as an error names it: in the package (wscl/...) when it is there."""
    try:
        return str(path.resolve().relative_to(PACKAGE.parent))
    except ValueError:
        return str(path)


def _files(folder: Path, suffix: str) -> list[Path]:
    return sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("_"))


def _check_name(path: Path, kind: str) -> str:
    if not NAME.fullmatch(path.stem):
        raise ValueError(f"{shown(path)}: {path.stem!r} is not a {kind} name (the file's name is the {kind}'s): "
                         "lower-case letters, digits and _, starting with a letter; rename the file")
    return path.stem


# -- learners --------------------------------------------------------------------------------------------------

def _declaration_node(path: Path, tree: ast.Module) -> ast.expr:
    found = [node.value for node in tree.body
             if (isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["DECLARATION"])
             or (isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "DECLARATION"
                 and node.value is not None)]
    if len(found) != 1:
        raise ValueError(f"{shown(path)}: {'no' if not found else len(found)} module-level DECLARATION = {{...}}; a "
                         "learner's file declares itself once: DECLARATION = {\"about\": \"...\", \"hparams\": "
                         "{NAME: {\"default\": ..., \"range\": [LOW, HIGH], \"about\": \"...\"}}}")
    return found[0]


def read_learner(path: Path) -> dict[str, Any]:
    """The DECLARATION of one learner's module, from its source (the module is not imported)."""
    _check_name(path, "method")
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise ValueError(f"{shown(path)}: not valid Python ({exc.msg}, line {exc.lineno}); its DECLARATION is read "
                         "from its source") from None
    node = _declaration_node(path, tree)
    try:
        declared = ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"{shown(path)}, line {node.lineno}: DECLARATION is not a literal; the settings read it "
                         "without importing the file, so it holds only dicts, lists, strings and numbers (no "
                         "names, calls or expressions)") from None
    if not isinstance(declared, dict):
        raise ValueError(f"{shown(path)}: DECLARATION must be a dict with {', '.join(LEARNER_FIELDS)}")
    unknown = sorted(set(declared) - set(LEARNER_FIELDS), key=str)
    if unknown:
        raise ValueError(f"{shown(path)}: DECLARATION has unknown fields {unknown}; a learner declares "
                         f"{', '.join(LEARNER_FIELDS)}")
    if not isinstance(declared.get("about"), str) or not declared["about"].strip():
        raise ValueError(f"{shown(path)}: DECLARATION has no `about` (one line: what the learner does)")
    order = declared.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise ValueError(f"{shown(path)}: DECLARATION's `order` must be a whole number (its place in the lists of "
                         f"methods), not {order!r}")
    hparams = declared.setdefault("hparams", {})
    if not isinstance(hparams, dict) or not all(isinstance(h, dict) for h in hparams.values()):
        raise ValueError(f"{shown(path)}: DECLARATION's `hparams` must map each hyper-parameter's name to "
                         "{\"default\": ..., \"range\": [LOW, HIGH], \"about\": \"...\"}")
    bad = [name for name in hparams if not isinstance(name, str) or not NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"{shown(path)}: hyper-parameter names {bad} are not names (lower-case letters, digits and "
                         "_, starting with a letter)")
    return declared


def learner_declarations(folder: Path = LEARNERS_FOLDER) -> dict[str, dict[str, Any]]:
    """Method -> its declaration ({about, order?, hparams}) for every module of the learners' folder, ordered by
    `order`, then by name (a learner without an `order` comes after those with one)."""
    declared = {_check_name(path, "method"): read_learner(path) for path in _files(folder, ".py")}
    if not declared:
        raise ValueError(f"{shown(folder)}: no learner's module; a learner is one module there")
    ranked = sorted(declared, key=lambda m: (declared[m].get("order") is None, declared[m].get("order") or 0, m))
    return {method: declared[method] for method in ranked}


def learner_file(method: str) -> str:
    return shown(LEARNERS_FOLDER / f"{method}.py")


# -- presets ---------------------------------------------------------------------------------------------------

def read_preset(path: Path) -> dict[str, Any]:
    """One preset's file: {role, colour, about, settings}, its fields checked (its settings are checked as
    trainer settings by config.py, which knows them)."""
    _check_name(path, "preset")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{shown(path)}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{shown(path)}: a preset is a mapping with {', '.join(PRESET_FIELDS)}")
    unknown = sorted(set(spec) - set(PRESET_FIELDS), key=str)
    missing = [field for field in PRESET_FIELDS if field not in spec]
    if unknown or missing:
        what = "; ".join(part for part in (f"unknown fields {unknown}" if unknown else "",
                                           f"missing fields {missing}" if missing else "") if part)
        raise ValueError(f"{shown(path)}: {what}; a preset has {', '.join(PRESET_FIELDS)}")
    if spec["role"] not in PRESET_ROLES:
        raise ValueError(f"{shown(path)}: role {spec['role']!r} is not one of {', '.join(PRESET_ROLES)}")
    if not isinstance(spec["colour"], str) or not COLOUR.fullmatch(spec["colour"]):
        raise ValueError(f"{shown(path)}: colour {spec['colour']!r} is not a hex colour in quotes, e.g. "
                         "colour: \"#117733\" (unquoted, # starts a YAML comment)")
    if not isinstance(spec["about"], str) or not spec["about"].strip():
        raise ValueError(f"{shown(path)}: `about` must be one line: the claim the preset tests, labelled")
    if not isinstance(spec["settings"], dict):
        raise ValueError(f"{shown(path)}: `settings` must be a mapping of trainer settings ({{}} for none)")
    return spec


def preset_declarations(folder: Path = PRESETS_FOLDER) -> dict[str, dict[str, Any]]:
    """Name -> {role, colour, about, settings} for every YAML file of the presets' folder, in role order
    (baseline, wscl, ablation), then by name."""
    declared = {_check_name(path, "preset"): read_preset(path) for path in _files(folder, ".yaml")}
    if not declared:
        raise ValueError(f"{shown(folder)}: no preset's file; a preset is one YAML file there")
    ranked = sorted(declared, key=lambda name: (PRESET_ROLES.index(declared[name]["role"]), name))
    return {name: declared[name] for name in ranked}


def preset_file(name: str) -> str:
    return shown(PRESETS_FOLDER / f"{name}.yaml")
