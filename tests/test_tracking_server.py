"""The smoke study against a real MLflow tracking server: jobs log to it, and a finished study moves to it."""
import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from workflow_support import (SMOKE_RUNS, edit_smoke_config, job_counts, metrics_path, snakemake, train_log,
                              workflow_copy)


def children_by_run(client: MlflowClient, experiment: str) -> dict:
    """(preset, seed) -> child run of an experiment; fails on a missing or doubled run."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    runs = [r for r in client.search_runs([found.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    keyed = {(r.data.tags["preset"], int(r.data.tags["seed"])): r for r in runs}
    assert len(runs) == len(keyed) == len(SMOKE_RUNS), [r.data.tags["wscl.run_key"] for r in runs]
    return keyed


def assert_server_holds_study(url: str, experiment: str, workdir, tmp_path) -> None:
    """Every run, its per-task metrics and its metrics.json artifact, as the run folders hold them."""
    client = MlflowClient(tracking_uri=url)
    children = children_by_run(client, experiment)
    assert set(children) == set(SMOKE_RUNS)
    for run, child in children.items():
        metrics = json.loads(metrics_path(workdir, *run).read_text())
        for setting in ("class_il", "task_il"):
            for key in ("final_avg_acc", "forgetting", "bwt", "fwt"):
                assert child.data.metrics[f"{setting}/{key}"] == pytest.approx(metrics[setting][key])
            history = client.get_metric_history(child.info.run_id, f"{setting}/acc_task_0")
            assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
                [row[0] for row in metrics[setting]["accuracy_matrix"]])
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"metrics.json", "accuracy_matrix.png"}
        fetched = client.download_artifacts(child.info.run_id, "metrics.json", str(tmp_path))
        assert json.loads(open(fetched).read()) == metrics


def test_parallel_local_jobs_log_every_run_to_the_server(local_server_study, mlflow_server, tmp_path):
    assert_server_holds_study(mlflow_server, "smoke_local", local_server_study, tmp_path)
    experiment = MlflowClient(tracking_uri=mlflow_server).get_experiment_by_name("smoke_local")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # stored by the server, not by the jobs


def test_moving_a_finished_study_to_the_server_retrains_nothing(smoke, mlflow_server, tmp_path):
    workdir = workflow_copy(tmp_path / "moved")
    for folder in ("results", ".snakemake"):
        shutil.copytree(smoke / folder, workdir / folder)
    edit_smoke_config(workdir, {"mlflow.tracking_uri": mlflow_server})
    planned = job_counts(snakemake(workdir, "-n").stdout)
    assert planned == {"mlflow_setup": 1, "mlflow_sync": 1, "all": 1}
    before = {run: (metrics_path(workdir, *run).stat().st_mtime_ns, train_log(workdir, *run).read_text())
              for run in SMOKE_RUNS}
    snakemake(workdir)
    assert before == {run: (metrics_path(workdir, *run).stat().st_mtime_ns, train_log(workdir, *run).read_text())
                      for run in SMOKE_RUNS}
    setup = json.loads((workdir / "results/mlflow/setup.json").read_text())
    assert setup["tracking_uri"] == mlflow_server
    assert len(json.loads((workdir / "results/mlflow/sync.json").read_text())["logged"]) == len(SMOKE_RUNS)
    assert_server_holds_study(mlflow_server, "smoke", workdir, tmp_path)
    # Syncing again (what every later run of the workflow does) finds every run there and logs nothing.
    ids = {run: child.info.run_id for run, child in children_by_run(MlflowClient(mlflow_server), "smoke").items()}
    snakemake(workdir, "mlflow_sync", "--forcerun", "mlflow_sync")
    sync = json.loads((workdir / "results/mlflow/sync.json").read_text())
    assert sync["logged"] == [] and len(sync["unchanged"]) == len(SMOKE_RUNS)
    assert ids == {run: c.info.run_id for run, c in children_by_run(MlflowClient(mlflow_server), "smoke").items()}
