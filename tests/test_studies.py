import re
from pathlib import Path

import pytest
import yaml

from wscl.settings.config import ConfigError
from wscl.study.studies import RunKey, Study

PAPER = yaml.safe_load((Path(__file__).parents[1] / "config/paper.yaml").read_text())


def test_buffer_free_preset_runs_once_per_benchmark_at_buffer_zero():
    runs = list(Study(PAPER).runs())
    wake_rem = [r for r in runs if r.preset == "wake_rem"]
    assert {r.buffer for r in wake_rem} == {0} and len(wake_rem) == 4 * 5
    assert len(runs) == len(set(runs))


def test_overrides_apply_in_order_to_matching_runs_only():
    study = Study(PAPER)
    lr = lambda b, buf, m: study.trainer_config(RunKey(b, buf, m, "base", "reference", 0))["training"]["lr"]  # noqa: E731
    assert lr("seq-cifar10", 200, "er") == 0.1
    assert lr("seq-tinyimg-half", 500, "er") == 0.03 and lr("seq-tinyimg-half", 200, "er") == 0.1
    assert lr("seq-cifar10", 200, "er_ace") == 0.03
    derpp = study.trainer_config(RunKey("seq-tinyimg-half", 200, "derpp", "full", "reference", 1))["training"]["derpp"]
    assert derpp == {"alpha": 0.1, "beta": 1.0}
    fg = study.trainer_config(RunKey("seq-fg-imagenet", 1000, "derpp", "full", "reference", 1))
    assert fg["training"]["derpp"] == {"alpha": 0.2, "beta": 0.5} and fg["training"]["batch_size"] == 8
    assert fg["training"]["replay_batch_size"] == 8
    assert fg["scenario"]["n_tasks"] == 20 and fg["training"]["buffer_size"] == 1000 and fg["seed"] == 1


def test_preset_controlled_settings_are_refused_in_study_wide_sections():
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    config["trainer"]["wscl"]["nrem"] = {"enabled": True}
    with pytest.raises(ConfigError, match=r"trainer sets wscl.nrem.enabled, which the presets control"):
        Study(config)


def test_bad_trainer_setting_is_reported_at_planning_time():
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    config["benchmarks"]["seq-cifar10"]["trainer"]["model"] = {"widht": 8}
    with pytest.raises(ConfigError, match=r"model.widht.*did you mean 'model.width'"):
        Study(config).trainer_config(RunKey("seq-cifar10", 200, "er", "base", "reference", 0))


def paper_key(benchmark, buffer, method, preset="full"):
    return RunKey(benchmark, buffer, method, preset, "reference", 0)


@pytest.mark.parametrize("benchmark,buffer,method,expected", [
    # [code] utils/best_args.py of the authors, as listed in docs/method.md §3
    ("seq-fg-imagenet", 200, "er_ace", {"lr": 0.03, "batch_size": 8, "replay_batch_size": 8}),
    ("seq-fg-imagenet", 200, "er", {"lr": 0.1, "batch_size": 32, "replay_batch_size": 32}),
    ("seq-fg-imagenet", 1000, "er", {"lr": 0.03, "batch_size": 32, "replay_batch_size": 32}),
    ("seq-fg-imagenet", 200, "derpp", {"batch_size": 8, "replay_batch_size": 8, "derpp": {"alpha": 0.1, "beta": 1.0}}),
    ("seq-cifar100", 500, "derpp", {"derpp": {"alpha": 0.1, "beta": 0.5}}),
    ("seq-cifar100", 200, "derpp", {"derpp": {"alpha": 0.1, "beta": 0.5}}),
    ("seq-cifar10", 500, "derpp", {"lr": 0.03, "derpp": {"alpha": 0.2, "beta": 0.5}}),
])
def test_paper_grid_uses_the_authors_best_arguments(benchmark, buffer, method, expected):
    training = Study(PAPER).trainer_config(paper_key(benchmark, buffer, method))["training"]
    assert {k: training[k] for k in expected} == expected


def test_paper_grid_runs_both_wscls_beside_the_base_learners():
    runs = list(Study(PAPER).runs())
    for method in ("er", "er_ace", "derpp"):
        presets = {r.preset for r in runs if r.method == method}
        assert {"base", "authors", "full"} <= presets


def with_grid(**entry):
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    config["grid"] = [{"methods": ["er_ace"], "presets": ["authors"], **entry}]
    return config


def test_fidelity_is_a_grid_dimension_kept_apart_in_run_folders_and_groups():
    study = Study(with_grid(fidelities=["reference", "corrected"]))
    runs = [r for r in study.runs() if r.benchmark == "seq-cifar10" and r.buffer == 200 and r.seed == 0]
    assert sorted(r.fidelity for r in runs) == ["corrected", "reference"]
    assert len({study.run_dir(r) for r in runs}) == 2 and len({r.group for r in runs}) == 2
    for r in runs:
        assert study.trainer_config(r)["fidelity"] == r.fidelity
        assert r.fidelity in study.run_dir(r) and r.group.endswith(r.fidelity)


def test_a_grid_entry_without_fidelities_uses_the_studys_fidelity():
    config = with_grid()
    config["fidelity"] = "corrected"
    assert {r.fidelity for r in Study(config).runs()} == {"corrected"}


@pytest.mark.parametrize("section,key,value,where", [
    ("trainer", "fidelity", "corrected", "fidelities"),
    ("trainer", "seed", 3, "seeds"),
    ("trainer", "preset", "full", "presets"),
    ("benchmark", "training.method", "er", "methods"),
    ("override", "training.buffer_size", 50, "buffers"),
    ("override", "dataset.name", "synthetic", "dataset"),
])
def test_run_coordinates_in_trainer_sections_are_refused_with_where_they_belong(section, key, value, where):
    config = yaml.safe_load(yaml.safe_dump(PAPER))
    tree = {}
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    if section == "trainer":
        config["trainer"].update(tree)
        name = "trainer"
    elif section == "benchmark":
        config["benchmarks"]["seq-cifar10"]["trainer"].update(tree)
        name = "benchmarks.seq-cifar10.trainer"
    else:
        config["overrides"].append({"match": {"method": "er"}, "trainer": tree})
        name = f"overrides[{len(config['overrides']) - 1}].trainer"
    message = rf"{re.escape(name)} sets {re.escape(key)}, which is a run coordinate.*{where}"
    with pytest.raises(ConfigError, match=message):
        Study(config)
