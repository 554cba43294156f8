"""Failed runs inside a study (wscl/study/run_failures.py): recorded, not fatal; left out of the means and
verdicts, named in every table, the report and the MLflow parents; selection skips a failed sweep point."""
import json

import pandas as pd
import pytest
from workflow_support import edit_smoke_config, snakemake, workflow_copy

from wscl.method.metrics import SUMMARY_KEYS
from wscl.study.aggregate import counted, pretty, summary_table
from wscl.study.run_failures import failed_seeds_text, failure_of


def test_a_failed_run_is_one_that_stopped_exploded_collapsed_or_ended_non_finite():
    healthy = {"class_il": {"final_avg_acc": 50.0}, "task_il": {"final_avg_acc": 80.0}, "training_failures": []}
    assert failure_of(healthy) == ""
    assert failure_of({"status": "failed", "failure": "non-finite loss (nan)"}) == "stopped: non-finite loss (nan)"
    records = [{"kind": "loss_exploded", "task": 1}, {"kind": "collapsed", "task": 2}]
    exploded = {**healthy, "training_failures": records}
    assert failure_of(exploded) == "collapsed, loss_exploded (task 1)"
    assert failure_of({**healthy, "class_il": {"final_avg_acc": float("nan")}}) == "non-finite final figures"
    assert failed_seeds_text([]) == "0" and failed_seeds_text([2, 0]) == "2 (seeds 0, 2)"


def runs_with_one_failed_seed() -> pd.DataFrame:
    rows = [{"benchmark": "b", "buffer": 20, "method": "er_ace", "preset": "full", "point": "", "fidelity": "reference",
             "seed": seed, "failure": "collapsed (task 1)" if seed == 2 else "",
             **{f"{s}_{m}": acc for s in ("class_il", "task_il")
                for m in SUMMARY_KEYS}}
            for seed, acc in ((0, 60.0), (1, 62.0), (2, 10.0))]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("include", [False, True])
def test_failed_seeds_are_left_out_of_the_means_unless_the_study_includes_them(include):
    runs = runs_with_one_failed_seed()
    group, failed = counted(runs, include)
    assert failed == [2] and len(group) == (3 if include else 2)
    table = summary_table(runs, "b", 20, None, include_failed=include)
    row = table.iloc[0]
    assert row.failed == 1 and row.failed_seeds == [2]
    assert row.class_il_final_avg_acc_mean == pytest.approx(44.0 if include else 61.0)
    assert pretty(table).failed.tolist() == ["1 (seed 2) included" if include else "1 (seed 2)"]


def test_a_study_with_a_diverging_sweep_point_and_preset_completes_and_names_them(tmp_path):
    """training.lr 10 with runtime.on_training_failure stop: `wscl train` exits 5 for those runs; in the study
    they are recorded as failed, the sweep selects the healthy point and every output names the failures."""
    from mlflow.tracking import MlflowClient
    work = workflow_copy(tmp_path / "wf")
    edit_smoke_config(work, {"trainer.scenario.tune_per_class": 5, "trainer.runtime.on_training_failure": "stop",
                             "sweep": {"match": {"preset": "full"}, "settings": {"training.lr": [0.01, 10.0]}},
                             "overrides": [{"match": {"preset": "base"}, "trainer": {"training": {"lr": 10.0}}}]})
    snakemake(work)
    results = work / "results"
    failed = json.loads((results / "runs/synthetic/buffer20/er_ace/full@training_lr~10.0/reference/seed0/metrics.json")
                        .read_text())
    assert failed["status"] == "failed" and "runtime.on_training_failure=stop" in failed["failure"]
    selection = json.loads((results / "tables/selection.json").read_text())
    (group,) = selection["groups"].values()
    assert group["selected"] == "training_lr~0.01"
    assert group["points"]["training_lr~10.0"]["skipped"].startswith("failed: seed 0: stopped:")
    assert "failed: seed" in (results / "tables/synthetic_buffer20_selection.md").read_text()
    table = pd.read_csv(results / "tables/synthetic_buffer20.csv")
    base = table[table.preset == "base"].iloc[0]
    assert base.seeds == 0 and base.failed == 2
    assert "2 (seeds 0, 1)" in (results / "tables/synthetic_buffer20.md").read_text()
    report = (results / "report.html").read_text()
    assert "failed run(s)</b>, left out of the means and verdicts" in report
    assert "er_ace/base/reference seed 1" in report
    client = MlflowClient(f"sqlite:///{results / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    parents = {r.data.tags.get("wscl.group"): r for r in client.search_runs([experiment.experiment_id])
               if "wscl.group" in r.data.tags}
    base_parent = parents["synthetic/buffer20/er_ace/base/reference"]
    assert base_parent.data.metrics["failed_seeds"] == 2
    assert base_parent.data.tags["failed_seeds"].startswith("0, 1 (left out")


def test_wscl_train_alone_still_exits_5_and_records_the_failure_only_when_asked(tmp_path, capsys):
    from conftest import tiny_config

    from wscl.cli import main
    from wscl.method.metrics import read_metrics
    cfg = tiny_config(scenario={"n_tasks": 2}, training={"lr": 10.0}, runtime={"on_training_failure": "stop"})
    args = ["train", "--config-json", json.dumps(cfg.to_dict()), "--quiet", "--mlflow-uri", "none"]
    assert main([*args, "--out", str(tmp_path / "alone")]) == 5
    assert not (tmp_path / "alone/metrics.json").exists()
    assert main([*args, "--out", str(tmp_path / "study"), "--record-failure"]) == 0
    metrics, _ = read_metrics(tmp_path / "study/metrics.json")  # sealed, and read like any run's metrics
    assert metrics["status"] == "failed" and "training loss exploded" in metrics["failure"]
    assert failure_of(metrics).startswith("stopped: training loss exploded")
