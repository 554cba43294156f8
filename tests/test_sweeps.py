"""Sweeps (wscl/study/sweeps.py) and the choice of a point on the tuning split (wscl/study/selection.py)."""
import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from workflow_support import REPO, edit_smoke_config, snakemake, workflow_copy

from wscl.settings.config import ConfigError
from wscl.study.selection import select
from wscl.study.studies import Study
from wscl.study.sweeps import point_names

SMOKE = yaml.safe_load((REPO / "config/smoke.yaml").read_text())


def study_with(sweep, grid=None, **trainer):
    config = copy.deepcopy(SMOKE)
    config["sweep"] = sweep
    if grid is not None:
        config["grid"] = grid
    config["trainer"]["scenario"]["tune_per_class"] = 5
    for section, values in trainer.items():
        config["trainer"].setdefault(section, {}).update(values)
    return Study(config)


GRID_SWEEP = {"match": {"preset": "full"}, "settings": {"wscl.nrem.epochs": [1, 2], "training.lr": [0.01, 0.05]}}


def test_a_grid_sweep_makes_each_point_a_run_coordinate_with_its_own_folder_group_and_settings():
    study = study_with(GRID_SWEEP)
    full = [k for k in study.runs() if k.preset == "full"]
    assert len(full) == 4 * len(SMOKE["seeds"])  # 2 x 2 points, every seed
    assert all(k.point for k in full) and not any(k.point for k in study.runs() if k.preset == "base")
    point = "training_lr~0.01,nrem_epochs~2"
    key = next(k for k in full if k.point == point and k.seed == 0)
    assert study.run_dir(key).endswith(f"/full@{point}/reference/seed0")
    assert key.group.endswith(f"/full@{point}/reference") and key.group in study.groups()
    cfg = study.trainer_config(key)
    assert cfg["wscl"]["nrem"]["epochs"] == 2 and cfg["training"]["lr"] == 0.01
    assert cfg["wscl"]["nrem"].get("enabled", True)  # the rest of the run's settings are untouched


def test_one_at_a_time_varies_each_setting_alone_around_the_runs_own_value():
    study = study_with({**GRID_SWEEP, "design": "one_at_a_time"})
    points = {k.point for k in study.runs() if k.preset == "full"}
    lr = SMOKE["trainer"]["training"].get("lr", 0.03)
    # the run's own point (nrem.epochs 1, its lr), then each other value alone: epochs 2; lr 0.01 and 0.05
    assert len(points) == 1 + 1 + 2
    assert f"training_lr~{lr},nrem_epochs~1" in points  # smoke's nrem.epochs is 1: the own point
    assert f"training_lr~{lr},nrem_epochs~2" in points and "training_lr~0.05,nrem_epochs~1" in points


def test_a_points_name_does_not_depend_on_the_order_the_study_lists_its_settings():
    """Snakemake reads the study from YAML, a job from sorted JSON: both must name every point alike."""
    listed = study_with(GRID_SWEEP)
    reordered = copy.deepcopy(GRID_SWEEP)
    reordered["settings"] = dict(reversed(list(reordered["settings"].items())))
    assert list(listed.runs()) == list(study_with(reordered).runs())


def test_adding_a_value_keeps_every_existing_point_and_folder():
    before = {(k.point, k.seed) for k in study_with(GRID_SWEEP).runs()}
    wider = copy.deepcopy(GRID_SWEEP)
    wider["settings"]["wscl.nrem.epochs"].append(3)
    after = {(k.point, k.seed) for k in study_with(wider).runs()}
    assert before < after and len(after - before) == 2 * len(SMOKE["seeds"])


def test_point_names_are_paramspace_instances_keeping_each_values_type():
    assert point_names([{"x.a.b": 1, "c": 0.5}, {"x.a.b": 2, "c": "auto"}]) == ["c~0.5,a_b~1", "c~auto,a_b~2"]
    assert point_names([{"x.a.b": 1, "y.a.b": 2}]) == ["x_a_b~1,y_a_b~2"]  # alike endings: whole paths


@pytest.mark.parametrize("settings, message", [
    ({"wscl.nrem.epoch": [1, 2]}, "did you mean 'wscl.nrem.epochs'"),
    ({"seed": [0, 1]}, "is a run coordinate, not a setting to sweep; set it through the study's `seeds`"),
    ({"training.buffer_size": [100]}, "a benchmark's `buffers`"),
    ({"wscl.nrem.enabled": [True, False]}, "is switched by the presets"),
    ({"wscl.nrem.epochs": [1, -1]}, "wscl.nrem.epochs=-1 is out of range"),
    ({"wscl.nrem.epochs": [1, 1]}, "must be a list of distinct values"),
    ({"scenario.test_per_class": [10, 20]}, "sweep.settings.scenario.test_per_class changes the scenario"),
    ({"dataset.synthetic.noise": [0.1, 0.2]}, "sweep.settings.dataset.synthetic.noise changes the dataset"),
    ({"scenario.tune_per_class": [5, 9]}, "or a benchmark's `trainer` section instead"),
])
def test_a_wrong_sweep_is_refused_naming_the_key_and_where_it_belongs(settings, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        study_with({"match": {"preset": "full"}, "settings": settings})


@pytest.mark.parametrize("grid, message", [
    ([{"methods": ["er_ace"], "presets": ["base", "full", "no_nrem"]},
      {"methods": ["er_ace"], "presets": ["no_nrem"], "tuned_from": "full"}], "no_nrem/reference would run"),
    ([{"methods": ["er_ace"], "presets": ["base", "full"]},
      {"methods": ["er_ace"], "presets": ["no_nrem"], "tuned_from": "base"}], "no sweep expands"),
    ([{"methods": ["er_ace"], "presets": ["base", "full"]},
      {"methods": ["er_ace"], "presets": ["authors"], "tuned_from": "full"}], "preset authors sets wscl.stm.size"),
])
def test_runs_at_a_tuned_point_are_planned_only_where_they_are_unambiguous(grid, message):
    """One row per preset of a table; a tuned preset takes a swept group's point, and not one it would undo."""
    sweep = {"match": {"preset": "full"}, "settings": {"wscl.stm.size": [100, 200]}}
    with pytest.raises(ConfigError, match=message):
        list(study_with(sweep, grid=grid).runs())


def test_a_sweep_without_a_tuning_split_is_refused_at_planning():
    config = copy.deepcopy(SMOKE)
    config["sweep"] = GRID_SWEEP
    with pytest.raises(ConfigError, match="scenario.tune_per_class"):
        list(Study(config).runs())


def test_permuting_the_test_labels_leaves_the_selection_unchanged(tmp_path, tiny):
    """Two copies of one prepared dataset, the second with its test labels permuted: every point trains the
    same (training never reads test labels), so the tuning figures and the selection are the same, while the
    test figures differ."""
    from wscl.data.canonical import load, save
    from wscl.data.synthetic import synthetic
    from wscl.run.trainer import Run
    syn = tiny().dataset.synthetic.to_dict()
    data = synthetic(**syn)
    save(data, tmp_path / "same/syn")
    data.test_y = np.random.default_rng(0).permutation(data.test_y)
    save(data, tmp_path / "permuted/syn")
    selections, tests = [], []
    for root in ("same", "permuted"):
        config = copy.deepcopy(SMOKE)
        config.update(results=str(tmp_path / root / "results"), seeds=[0],
                      data={"root": str(tmp_path / root)},
                      benchmarks={"syn": {"dataset": "syn", "buffers": [20]}},
                      grid=[{"methods": ["er_ace"], "presets": ["full"]}],
                      sweep={"settings": {"training.lr": [0.003, 0.05]}})
        config["trainer"]["dataset"] = {"synthetic": {}}
        config["trainer"]["scenario"]["tune_per_class"] = 10
        config["trainer"]["training"]["epochs"] = 1
        study = Study(config)
        for key in study.runs():
            Run(study.run_config(key), study.run_dir(key), quiet=True, log=lambda *_: None).run()
        selections.append(select(study))
        tests.append([json.loads(Path(study.run_dir(k), "metrics.json").read_text())["class_il"]["final_avg_acc"]
                      for k in study.runs()])
    assert load(tmp_path / "same/syn").test_y.tolist() != load(tmp_path / "permuted/syn").test_y.tolist()
    assert tests[0] != tests[1]  # the test figures moved ...
    assert selections[0] == selections[1]  # ... the choice, and every tuning figure behind it, did not
    (group,) = selections[0]["groups"].values()
    assert group["selected"] in {"training_lr~0.003", "training_lr~0.05"}


def test_a_tiny_sweep_runs_end_to_end_with_selection_tables_figures_and_a_parent_per_point(tmp_path):
    from mlflow.tracking import MlflowClient
    work = workflow_copy(tmp_path / "wf")
    edit_smoke_config(work, {"trainer.scenario.tune_per_class": 5,
                             "sweep": {"match": {"preset": "full"}, "settings": {"training.lr": [0.01, 0.05]}},
                             "grid": [{"methods": ["er_ace"], "presets": ["base", "full"]},
                                      {"methods": ["er_ace"], "presets": ["no_nrem"], "tuned_from": "full"}]})
    snakemake(work)
    results = work / "results"
    selection = json.loads((results / "tables/selection.json").read_text())
    (group,) = selection["groups"].values()
    chosen = group["selected"]
    assert chosen in ("training_lr~0.01", "training_lr~0.05") and "test set played no part" in selection["criterion"]
    # the ablation trained at the chosen point
    tuned = json.loads((results / "runs/synthetic/buffer20/er_ace/no_nrem@tuned/reference/seed0/metrics.json")
                       .read_text())
    assert tuned["config"]["training"]["lr"] == group["settings"]["training.lr"]
    # the table reports the chosen point of full, the tuned ablation, and base; the selection table every point
    table = (results / "tables/synthetic_buffer20.csv").read_text()
    assert chosen in table and "tuned" in table
    points = (results / "tables/synthetic_buffer20_selection.md").read_text()
    assert "training_lr~0.01" in points and "training_lr~0.05" in points and "✓" in points
    assert (results / "plots/synthetic_buffer20_sensitivity-training.lr.png").stat().st_size > 10_000
    report = (results / "report.html").read_text()
    assert "sensitivity-training.lr" in report and "Sweep: the points" in report
    client = MlflowClient(f"sqlite:///{results / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    groups = {r.data.tags.get("wscl.group") for r in client.search_runs([experiment.experiment_id])}
    for point in ("training_lr~0.01", "training_lr~0.05", "tuned"):
        preset = "no_nrem" if point == "tuned" else "full"
        assert f"synthetic/buffer20/er_ace/{preset}@{point}/reference" in groups
    # a second invocation does nothing; a new value trains only its own runs (and, the selection being made
    # again, the runs at the tuned point)
    again = snakemake(work, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    edit_smoke_config(work, {"sweep": {"match": {"preset": "full"}, "settings": {"training.lr": [0.01, 0.05, 0.1]}}})
    planned = snakemake(work, "-n")
    variants = re.findall(r"variant=([^,\s]+)", planned.stdout + planned.stderr)
    assert sorted(variants) == ["full@training_lr~0.1"] * 2 + ["no_nrem@tuned"] * 2, variants
