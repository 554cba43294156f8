"""The smoke study against a real MLflow tracking server: jobs log to it, and a finished study moves to it."""
import json
import shutil

from mlflow.tracking import MlflowClient
from workflow_support import (
    SMOKE_RUNS,
    assert_server_holds_study,
    children_by_run,
    edit_smoke_config,
    job_counts,
    metrics_path,
    snakemake,
    train_log,
    workflow_copy,
)

from wscl.core.safe_io import atomic_write_json


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


def test_sync_logs_what_is_missing_or_changed_and_nothing_else(tiny, tmp_path, monkeypatch):
    from wscl.run.trainer import Run
    from wscl.tracking.parents import setup_study
    from wscl.tracking.sync import sync_runs
    monkeypatch.chdir(tmp_path)  # run keys are relative to the working directory, as in the workflow
    Run(tiny(scenario={"n_tasks": 2}), "runs/a", quiet=True, log=lambda *_: None).run()
    setup = setup_study("sqlite:///mlflow.db", "study", "artifacts", ["g"])
    runs = [("g", "runs/a"), ("g", "runs/missing")]
    first = sync_runs(setup, runs, log=lambda *_: None)
    assert (first["logged"], first["unchanged"], first["missing"]) == (["runs/a"], [], ["runs/missing"])
    assert sync_runs(setup, runs, log=lambda *_: None)["logged"] == []
    metrics = json.loads(open("runs/a/metrics.json").read())
    metrics["class_il"]["final_avg_acc"] += 1.0  # a rerun with other numbers
    atomic_write_json("runs/a/metrics.json", metrics, sealed=True)
    assert sync_runs(setup, runs, log=lambda *_: None)["logged"] == ["runs/a"]
    children = MlflowClient("sqlite:///mlflow.db").search_runs(
        [setup["experiment_id"]], filter_string=f"tags.`mlflow.parentRunId` = '{setup['parents']['g']}'")
    assert len(children) == 1
    assert children[0].data.metrics["class_il/final_avg_acc"] == metrics["class_il"]["final_avg_acc"]
