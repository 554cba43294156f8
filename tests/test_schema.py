import copy
import json
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
        jsonschema.validate(resolve({"preset": preset}), schema)
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
