"""Training dynamics (wscl/method/dynamics.py): every epoch of every phase is recorded with the mean of the step
losses the trainer computed, reaches MLflow as step metrics, and recording it changes no number of the run."""
import pytest
import torch
from conftest import numbers, tiny_config

from wscl.method import dynamics, wake
from wscl.run.trainer import Run

# `full` trains every phase: wake, the freezing trial (tasks 2, 3), NREM and staged REM
CFG = tiny_config(training={"epochs": 2}, wscl={"nrem": {"epochs": 2}, "rem": {"schedule": "staged", "epochs": 1}})


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The run's metrics, and the step losses of every wake epoch as the loss monitor received them."""
    steps = {}
    original = wake.LossMonitor.record

    def record(self, step, loss, n_images):
        steps.setdefault((self.where.task, self.where.epoch, self.where.copy), {})[step] = float(loss)
        original(self, step, loss, n_images)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wake.LossMonitor, "record", record)
        metrics = Run(CFG, tmp_path_factory.mktemp("dynamics"), quiet=True, log=lambda *_: None).run()
    return metrics, steps


def test_every_epoch_of_every_phase_has_an_entry(recorded):
    metrics, _ = recorded
    T, epochs = CFG.scenario.n_tasks, CFG.training.epochs
    for t, task in enumerate(metrics["tasks"]):
        kinds = [(e["phase"], e["epoch"], e["copy"]) for e in task["dynamics"]]
        copies = len(task["freezing_scores"] or {})
        trial = [("freezing_trial", 0, c) for c in range(copies)]
        wake_epochs = [("wake", e, None) for e in range(1 if copies else 0, epochs)]
        dreams = [("rem", 0, None)] if task["dream_binding"] else []  # staged REM needs a free head to dream on
        assert kinds == trial + wake_epochs + [("nrem", e, None) for e in range(2)] + dreams
        assert (copies > 0) == (t > 0)
        assert all(e["mean_loss"] > 0 and e["steps"] > 0 and e["images"] > 0 for e in task["dynamics"])
    assert set(metrics["phases"]) == {"wake", "freezing_trial", "nrem", "rem"}
    assert metrics["tasks"][0]["dream_binding"]  # REM ran at least once
    assert metrics["peak_rss_mb"] > 0 and metrics["peak_device_memory_mb"] is None  # no GPU here
    assert len(metrics["tasks"]) == T


def test_an_epochs_mean_loss_is_the_mean_of_its_step_losses(recorded):
    metrics, steps = recorded
    for task in metrics["tasks"]:
        for e in task["dynamics"]:
            if e["phase"] in ("wake", "freezing_trial"):
                losses = steps[(e["task"], e["epoch"], e["copy"])]
                assert len(losses) == e["steps"]
                assert e["mean_loss"] == pytest.approx(sum(losses.values()) / len(losses), abs=1e-6)


def test_recording_the_dynamics_changes_no_number(recorded, tmp_path, monkeypatch):
    """The same run with the epoch records made without ever reading a loss: every number is the same."""
    metrics, _ = recorded

    def blind(self, which, losses, images, timed_images=None):
        return {**which._asdict(), "steps": 0, "images": 0,
                "mean_loss": None, "seconds": 0.0, "images_per_second": None, "peak_memory_mb": None}

    monkeypatch.setattr(dynamics.EpochClock, "entry", blind)
    blind_run = Run(CFG, tmp_path, quiet=True, log=lambda *_: None).run()
    strip = lambda m: {k: v for k, v in numbers(m).items() if k not in ("tasks", "peak_device_memory_mb")}  # noqa: E731
    assert strip(blind_run) == strip(metrics)
    assert [{k: v for k, v in t.items() if k != "dynamics"} for t in blind_run["tasks"]] == \
        [{k: v for k, v in t.items() if k != "dynamics"} for t in metrics["tasks"]]


def test_the_loss_curve_follows_the_adopted_copy_through_the_freezing_trial(recorded):
    metrics, _ = recorded
    curve = dynamics.loss_curve(metrics["tasks"], "wake")
    assert len(curve) == CFG.scenario.n_tasks * CFG.training.epochs
    task = metrics["tasks"][1]
    winner = list(task["freezing_scores"]).index(str(task["frozen_blocks"]))
    trial = [e for e in task["dynamics"] if e["phase"] == "freezing_trial"]
    assert curve[CFG.training.epochs] == trial[winner]["mean_loss"]


def test_epochs_reach_mlflow_as_step_metrics(recorded, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from wscl.core.safe_io import atomic_write_json
    from wscl.tracking.runs import Destination, log_run
    metrics, _ = recorded
    monkeypatch.chdir(tmp_path)
    atomic_write_json("run/metrics.json", metrics, sealed=True)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = log_run(metrics, "run", Destination(uri, "dynamics"))
    history = MlflowClient(uri).get_metric_history(run_id, "dynamics/wake/mean_loss")
    wake_entries = [e for t in metrics["tasks"] for e in t["dynamics"] if e["phase"] == "wake"]
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(i, e["mean_loss"]) for i, e in enumerate(wake_entries)]
    copy0 = MlflowClient(uri).get_metric_history(run_id, "dynamics/freezing_trial/copy0/mean_loss")
    assert len(copy0) == CFG.scenario.n_tasks - 1
    assert torch.isfinite(torch.tensor([m.value for m in history])).all()


def test_system_metrics_on_request_are_sampled_into_the_run_while_it_trains(tmp_path, monkeypatch):
    import json

    from mlflow.tracking import MlflowClient

    from wscl.cli import main
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # long enough for several 1-second samples (MLflow drops a sample cut short by the run's end)
    cfg = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 12}, preset="base",
                      runtime={"mlflow_system_metrics_every": 1})
    assert main(["train", "--config-json", json.dumps(cfg.to_dict()), "--out", "run", "--quiet", "--mlflow-uri", uri,
                 "--mlflow-experiment", "system"]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("system").experiment_id])
    system = [k for k in run.data.metrics if k.startswith("system/")]
    assert "system/cpu_utilization_percentage" in system and "system/system_memory_usage_megabytes" in system
    assert run.data.metrics["class_il/final_avg_acc"] > 0  # the same run holds the training's metrics
