"""The tuning split [ours] (docs/method.md, Tuning split): training images of every task held out for every
preset, scored after each task like the test images, reported under metrics.json's ``tune``, logged to MLflow
and in the study's runs table; a run without one reports what it did before."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import numbers, tiny_config
from test_checkpoint_faults import stop_after_save

from wscl.core.errors import ScenarioError
from wscl.core.safe_io import atomic_write_json
from wscl.data import benchmarks
from wscl.method import scenario as scenario_mod
from wscl.method.evaluation import accuracies, logits_of
from wscl.method.metrics import SUMMARY_KEYS, summary
from wscl.run import checkpoint
from wscl.run.trainer import Run

TUNE = 10
# Two tasks of three epochs (task 1's epoch 0 is the freezing trial), augmented training: the tuning images
# must be scored without it.
CFG = tiny_config(scenario={"n_tasks": 2, "tune_per_class": TUNE, "augment": True}, training={"epochs": 3})


def quiet_run(cfg, out, log=None) -> Run:
    return Run(cfg, out, quiet=True, log=log or (lambda *_: None))


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """An uninterrupted run with a tuning split: the run (its final network) and its metrics."""
    run = quiet_run(CFG, tmp_path_factory.mktemp("tuned"))
    return run, run.run()


def scenario_of(cfg):
    return scenario_mod.from_config(benchmarks.from_config(cfg), cfg)


def test_the_tuning_split_is_disjoint_from_every_other_set_and_the_same_for_every_preset():
    full = scenario_of(tiny_config(preset="full", scenario={"tune_per_class": 7}))
    base = scenario_of(tiny_config(preset="base", scenario={"tune_per_class": 7}))
    without = scenario_of(tiny_config(preset="full", fidelity="corrected"))  # no [code] image left out
    other_seed = scenario_of(tiny_config(preset="full", seed=1, scenario={"tune_per_class": 7}))
    train_y = np.asarray(benchmarks.from_config(tiny_config()).train_y)
    assert len(base.val_idx[1]) == 0 and len(full.val_idx[1]) > 0  # base holds nothing else out
    for t in range(full.n_tasks):
        for sc in (full, base):
            tune = sc.tune_idx[t]
            for other in (sc.train_idx[t], sc.val_idx[t], sc.freeze_idx[t]):
                assert not np.isin(tune, other).any()
            classes, counts = np.unique(train_y[tune], return_counts=True)
            assert classes.tolist() == sc.task_classes(t).tolist() and counts.tolist() == [7, 7]
        assert np.array_equal(full.tune_idx[t], base.tune_idx[t])
        assert np.array_equal(full.test_idx[t], without.test_idx[t])  # the test images stay as they were
        # without a tuning split they are the run's other images (trained on or held out; task 0 leaves the
        # validation share out of training without a validation split [code])
        assert t == 0 or np.isin(full.tune_idx[t], np.concatenate([without.train_idx[t], without.val_idx[t],
                                                         without.freeze_idx[t]])).all()
        # and never trained on by any task
        assert not np.isin(full.tune_idx[t], np.concatenate(full.train_idx + base.train_idx)).any()
    assert not all(np.array_equal(a, b) for a, b in zip(full.tune_idx, other_seed.tune_idx))


def test_a_tuning_split_too_large_for_a_class_is_a_scenario_error_naming_it():
    with pytest.raises(ScenarioError, match=r"\+ 75 \(scenario.tune_per_class\)"):
        scenario_of(tiny_config(scenario={"tune_per_class": 75}))


def test_without_a_tuning_split_a_run_reports_what_it_did_before(tmp_path):
    """tune_per_class 0 against a configuration without the setting (one written before it existed): the same
    numbers, and ``tune`` null."""
    from wscl.settings.config import Layer, build
    zero = tiny_config(scenario={"n_tasks": 2, "tune_per_class": 0})
    older = zero.to_dict()
    del older["scenario"]["tune_per_class"]
    absent = build([Layer("config file", older, "a configuration written before tune_per_class")])
    a, b = quiet_run(zero, tmp_path / "zero"), quiet_run(absent, tmp_path / "absent")
    with_zero, without = a.run(), b.run()
    assert with_zero["tune"] is None and without["tune"] is None and a.state.tune is None
    assert {k: v for k, v in numbers(with_zero).items() if k != "config"} == \
        {k: v for k, v in numbers(without).items() if k != "config"}
    assert with_zero["config"]["scenario"] == without["config"]["scenario"]  # the builder fills in its default
    for name in ("train_idx", "val_idx", "freeze_idx", "test_idx"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(a.scenario, name), getattr(b.scenario, name)))


def test_a_run_reports_tuning_figures_beside_the_test_figures(tuned):
    run, metrics = tuned
    tune, T = metrics["tune"], run.scenario.n_tasks
    assert set(tune) == {"class_il", "task_il"}
    for setting in ("class_il", "task_il"):
        R = tune[setting]["accuracy_matrix"]
        # filled where the test matrix is: after each task and before each task t > 0 (forgetting [code] reads it)
        assert [[v is None for v in row] for row in R] == \
            [[v is None for v in row] for row in metrics[setting]["accuracy_matrix"]]
        assert all(0.0 <= v <= 100.0 for row in R for v in row if v is not None)
        assert all(0.0 <= v <= 100.0 for v in tune[setting]["random_init_accuracy"])
        # the test figures' summary, with the run's fidelity
        expected = summary(np.array(R, dtype=float), np.array(tune[setting]["random_init_accuracy"]),
                           reference=metrics["fidelity"] == "reference")
        for key in SUMMARY_KEYS:
            assert tune[setting][key] == pytest.approx(expected[key], abs=1e-4), (setting, key)
        assert -100.0 <= tune[setting]["forgetting"] <= 100.0
    chance = 100.0 / (T * CFG.scenario.classes_per_task)
    assert tune["class_il"]["final_avg_acc"] > chance + 20
    # the final row is the final network's accuracy on each task's tuning images, unaugmented
    net, tests = run.learner.net, run.tests
    for j in range(T):
        rows = run.scenario.tune_idx[j]
        logits = logits_of(net, run.train_source, rows, tests.preprocess, tests.batch_size)
        target = torch.as_tensor(run.book.heads_of(run.train_y[rows]))
        class_il, task_il = accuracies(logits, target, torch.as_tensor(run.book.heads_of(run.scenario.task_classes(j))))
        assert tune["class_il"]["accuracy_matrix"][T - 1][j] == pytest.approx(class_il, abs=1e-5)
        assert tune["task_il"]["accuracy_matrix"][T - 1][j] == pytest.approx(task_il, abs=1e-5)


def test_resuming_inside_a_task_gives_the_uninterrupted_tuning_figures(tuned, tmp_path, monkeypatch):
    """Stopped at task 2's first timed checkpoint (after the freezing trial): its pre-training entry on the
    tuning split is in the checkpoint, and the resumed run ends with the uninterrupted numbers."""
    _, reference = tuned
    original = stop_after_save(monkeypatch, lambda state, position: position is not None
                               and (position["task"], position["epoch"]) == (1, 1))
    ticks = iter(range(0, 10**6, 60))
    timed = CFG.with_settings({"runtime": {"checkpoint_every_minutes": 1}}, "a timed checkpoint")
    interrupted = quiet_run(timed, tmp_path)
    interrupted.checkpoints.clock = lambda: next(ticks)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    monkeypatch.setattr(checkpoint, "save", original)
    saved = torch.load(tmp_path / checkpoint.FILE_NAME, weights_only=False)
    assert saved["position"]["task"] == 1
    assert not math.isnan(saved["state"]["tune"]["R"]["class_il"][0, 1])  # task 2 before training on it
    assert math.isnan(saved["state"]["tune"]["R"]["class_il"][1, 1])
    log = []
    resumed = quiet_run(CFG, tmp_path, log.append).run()  # the default interval: the same fingerprint
    assert any("resuming" in line and "inside task 2" in line for line in log)
    assert resumed["tune"] == reference["tune"]
    assert numbers(resumed) == numbers(reference)


def test_mlflow_rows_of_the_tuning_split(tuned):
    from wscl.tracking.rows import per_task_metrics, task_metrics
    _, metrics = tuned
    T = len(metrics["class_il"]["accuracy_matrix"])

    def tune_rows(rows):
        return sorted((m.key, m.step, m.value) for m in rows if m.key.startswith("tune/"))

    logged = tune_rows(per_task_metrics(metrics))
    for setting in ("class_il", "task_il"):
        R, figures = metrics["tune"][setting]["accuracy_matrix"], metrics["tune"][setting]
        for t in range(T):
            assert (f"tune/{setting}/avg_acc", t, pytest.approx(np.mean(R[t][: t + 1]))) in logged
        assert (f"tune/{setting}/final_avg_acc", T - 1, figures["final_avg_acc"]) in logged
        assert (f"tune/{setting}/forgetting", T - 1, figures["forgetting"]) in logged
    assert len(logged) == 2 * (T + 2)
    # the per-task rows logged live, plus the rest at the end, are the same rows
    live = [row for t in range(T) for row in task_metrics(metrics, t)]
    assert tune_rows(live + per_task_metrics(metrics, skip_tasks=set(range(T)))) == logged
    assert tune_rows(per_task_metrics({**metrics, "tune": None})) == []


def test_the_runs_table_has_the_tuning_figures_or_nan(tuned, tmp_path):
    from wscl.study.aggregate import load_runs, summary_table
    from wscl.study.studies import Study
    _, metrics = tuned
    study = Study({"study": "tuning", "results": str(tmp_path), "seeds": [0, 1],
                   "benchmarks": {"syn": {"dataset": "synthetic", "buffers": [100]}},
                   "grid": [{"methods": ["er_ace"], "presets": ["full"]}]})
    for key in study.runs():  # seed 0 with a tuning split, seed 1 without (as every run before it)
        m = metrics if key.seed == 0 else {k: v for k, v in metrics.items() if k != "tune"}
        Path(study.run_dir(key)).mkdir(parents=True)
        atomic_write_json(f"{study.run_dir(key)}/metrics.json", m, sealed=True)
    runs = load_runs(study).set_index("seed")
    for setting in ("class_il", "task_il"):
        for figure in ("final_avg_acc", "forgetting"):
            column = runs[f"tune_{setting}_{figure}"]
            assert column[0] == metrics["tune"][setting][figure] and math.isnan(column[1])
    table = summary_table(runs.reset_index(), "syn", 100, None)
    assert not [c for c in table.columns if "tune" in c]
