import copy
import difflib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from snakemake.utils import validate

from wscl.settings.config import CHOICES, METHODS, PRESETS, ConfigError, defaults, resolve
from wscl.settings.schema import TRAINER_SCHEMA, trainer_schema, write_schemas

REPO = Path(__file__).resolve().parents[1]
STUDY_SCHEMA = REPO / "rules/config.schema.yaml"


def study(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


def test_trainer_schema_accepts_the_defaults_and_every_preset():
    schema = trainer_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(defaults(), schema)
    for preset in PRESETS:
        jsonschema.validate(resolve({"preset": preset}).to_dict(), schema)
    assert schema["$defs"]["method"]["enum"] == list(METHODS)
    assert schema["$defs"]["preset"]["enum"] == list(PRESETS)
    assert schema["$defs"]["fidelity"]["enum"] == list(CHOICES["fidelity"])


@pytest.mark.parametrize("override", [
    {"training": {"lrr": 0.1}},
    {"training": {"method": "sgd"}},
    {"training": {"lr": -1}},
    {"training": {"derpp": {"alpha": -0.5}}},
    {"scenario": {"hold_out": "sometimes"}},
    {"wscl": {"nrem": {"stm_fraction": 1.5}}},
    {"runtime": {"device": "gpu"}},
    {"preset": "fullish"},
])
def test_trainer_schema_refuses_what_the_trainer_refuses(override):
    with pytest.raises(ConfigError):
        resolve(override)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(override, trainer_schema())


def test_the_workflow_validates_against_the_generated_schema(tmp_path):
    assert "validate(config, write_schemas(" in (REPO / "rules/common.smk").read_text()
    path = write_schemas(STUDY_SCHEMA, tmp_path)
    assert json.loads((tmp_path / TRAINER_SCHEMA).read_text()) == trainer_schema()
    for name in ("config.yaml", "smoke.yaml", "paper.yaml"):
        validate(study(name), path)
    for broken in ({"trainer": {"training": {"lrr": 1}}}, {"grid": [{"methods": ["sgd"], "presets": ["full"]}]},
                   {"grid": [{"methods": ["er"], "presets": ["fullish"]}]}, {"fidelity": "exact"},
                   {"overrides": [{"match": {"method": "sgd"}, "trainer": {}}]}):
        config = copy.deepcopy(study("config.yaml")) | broken
        with pytest.raises(Exception, match="Error validating config file"):
            validate(config, path)


def test_validation_inserts_no_trainer_defaults(tmp_path):
    """Snakemake fills in schema defaults: the trainer schema must have none, or a study would set every key."""
    config = study("config.yaml")
    trainer = copy.deepcopy(config["trainer"])
    validate(config, write_schemas(STUDY_SCHEMA, tmp_path))
    assert config["trainer"] == trainer

    def keywords(node):
        if isinstance(node, dict):
            yield from node
            for value in node.values():
                yield from keywords(value)
        elif isinstance(node, list):
            for value in node:
                yield from keywords(value)

    assert "default" not in set(keywords(trainer_schema()))


def test_config_readme_describes_every_study_key():
    schema = yaml.safe_load(STUDY_SCHEMA.read_text())
    readme = (REPO / "config/README.md").read_text()

    def keys(node: dict, prefix: str):
        for name, sub in node.get("properties", {}).items():
            yield f"{prefix}{name}"
            if sub.get("type") == "array" and "items" in sub:
                yield from keys(sub["items"], f"{prefix}{name}[].")
            elif isinstance(sub.get("additionalProperties"), dict):
                yield from keys(sub["additionalProperties"], f"{prefix}{name}.<name>.")
            else:
                yield from keys(sub, f"{prefix}{name}.")

    missing = [key for key in keys(schema, "") if f"`{key}`" not in readme]
    assert not missing


def test_trainer_sections_are_checked_first_naming_where_and_the_nearest_key():
    from wscl.study.studies import check_trainer_sections
    config = study("paper.yaml")
    config["benchmarks"]["seq-cifar10"]["trainer"]["training"] = {"lrr": 0.1}
    with pytest.raises(ConfigError, match=r"^benchmarks.seq-cifar10.trainer: unknown config key 'training.lrr'; "
                                          r"did you mean 'training.lr'"):
        check_trainer_sections(config)
    config = study("paper.yaml")
    config["overrides"][0]["trainer"] = {"training": {"derpp": {"alpha": -1}}}
    with pytest.raises(ConfigError, match=r"^overrides\[0\].trainer: training.derpp.alpha=-1 is out of range"):
        check_trainer_sections(config)


README = REPO / "config/README.md"


def test_config_readme_is_what_make_docs_writes():
    from wscl.settings.schema import README_COMMAND, config_readme
    current = README.read_text()
    expected = config_readme(current, yaml.safe_load(STUDY_SCHEMA.read_text()))
    changed = next((line for line in difflib.unified_diff(current.splitlines(), expected.splitlines(), lineterm="", n=0)
                    if line[:1] in "+-" and line[:3] not in ("+++", "---")), "")
    assert current == expected, (f"config/README.md is not current: run `{README_COMMAND}` (wscl schema --readme "
                                 "config/README.md) and commit it; its tables follow wscl/settings/defaults.yaml, "
                                 "the files of wscl/method/learners/ and wscl/settings/presets/ and "
                                 f"rules/config.schema.yaml (first changed line: {changed[:200]!r})")


def test_config_readme_follows_a_changed_default_range_preset_and_study_key(monkeypatch):
    from wscl.settings import config, schema
    study_schema = yaml.safe_load(STUDY_SCHEMA.read_text())
    current = README.read_text()
    changed = defaults()
    changed["training"]["lr"] = 0.25
    monkeypatch.setattr(schema, "defaults", lambda: copy.deepcopy(changed))
    monkeypatch.setitem(schema.RANGES, "training.epochs", (3, 7))
    monkeypatch.setitem(config.PRESET_SPECS, "no_merge", {"role": "ablation", "colour": "#123456",
                                                          "about": "[ours] test", "settings": {}})
    study_schema["properties"]["results"]["description"] = "where | everything goes"
    text = schema.config_readme(current, study_schema)
    assert text != current
    assert "| `training.lr` | `0.25` | a number in [0.0, 10.0] |" in text
    assert "| `training.epochs` | `2` | a whole number in [3, 7] |" in text
    assert "| `no_merge` | ablation | nothing | [ours] test |" in text
    assert "| `results` | `results` | where \\| everything goes |" in text
    assert text.split(schema.README_MARKER)[0] == current.split(schema.README_MARKER)[0]  # the intro stays
    del study_schema["properties"]["results"]["description"]
    with pytest.raises(ValueError, match="results has no description"):
        schema.config_readme(current, study_schema)


def test_the_readme_command_rewrites_only_the_generated_part(tmp_path, capsys):
    from wscl.cli import main
    from wscl.settings.schema import README_MARKER
    readme = tmp_path / "README.md"
    readme.write_text(f"# Intro by hand\n\n{README_MARKER}\nstale table\n")
    assert main(["schema", "--readme", str(readme), "--study-schema", str(STUDY_SCHEMA)]) == 0
    text = readme.read_text()
    assert text.startswith(f"# Intro by hand\n\n{README_MARKER}\n") and "stale table" not in text
    assert "| `wscl.nrem.stm_fraction` | `auto` | `auto` or a number in [0.0, 1.0] |" in text
    assert "written" in capsys.readouterr().out
    main(["schema", "--readme", str(readme), "--study-schema", str(STUDY_SCHEMA)])
    assert "already current" in capsys.readouterr().out


def test_every_setting_is_declared_once_with_its_description_and_bounds():
    """defaults.yaml is the one source: the defaults, ranges, choices and the schema's descriptions all come
    from it, and a malformed declaration is refused when the package loads it."""
    from wscl.settings import config
    schema = trainer_schema()
    flat = config.flatten(defaults())
    assert list(flat) == list(config.SETTINGS)
    for path, setting in config.SETTINGS.items():
        assert flat[path] == setting["default"]
        node = schema
        for part in path.split("."):
            node = node["properties"][part]
        assert node["description"].startswith(setting["about"])
        assert (path in config.RANGES) == ("range" in setting)
    assert config.CHOICES["preset"] == tuple(config.PRESETS) and config.CHOICES["training.method"] == METHODS
    assert config.AUTO_OR_NUMBER == {"wscl.nrem.stm_fraction"}
    for bad, message in [({"x": {"default": 1, "about": "a"}}, "every number has a `range`"),
                         ({"x": {"default": "a", "range": [0, 1], "about": "a"}}, "every number has a `range`"),
                         ({"x": {"default": 1, "range": [0, 1]}}, "has no `about`"),
                         ({"x": {"default": 1, "range": [0, 1], "about": "a", "unit": "s"}}, "unknown fields"),
                         ({"x": 3}, "must be a setting")]:
        with pytest.raises(ValueError, match=message):
            config._read_settings(bad, "", {}, {})


def test_presets_are_one_registry_with_a_role_colour_and_claim():
    from wscl.settings.config import PRESET_ROLES, PRESET_SPECS, presets_of
    assert PRESETS == {name: spec["settings"] for name, spec in PRESET_SPECS.items()}
    for spec in PRESET_SPECS.values():
        assert spec["role"] in PRESET_ROLES and re.fullmatch(r"#[0-9A-F]{6}", spec["colour"])
        assert re.match(r"\[(code|paper|ours)\]", spec["about"])
    assert len({spec["colour"] for spec in PRESET_SPECS.values()}) == len(PRESET_SPECS)
    assert presets_of("baseline") == ("base",) and presets_of("wscl") == ("authors", "full")
    assert presets_of("ablation") == ("no_freezing", "no_nrem", "no_plasticity", "no_rem", "rem_noise", "wake_rem")
