from mlflow.tracking import MlflowClient

from wscl.cli import main
from wscl.tracking import log_run
from wscl.trainer import Run


def test_run_is_logged_with_params_per_task_metrics_tags_and_artifacts(tiny, tmp_path):
    cfg = tiny(scenario={"n_tasks": 2})
    metrics = Run(cfg, tmp_path / "run", quiet=True, log=lambda *_: None).run()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp).info.run_id
    run_id = log_run(metrics, tmp_path / "run", uri, parent_run_id=parent)
    run = client.get_run(run_id)
    assert run.data.params["training.method"] == "er_ace" and run.data.params["fidelity"] == "reference"
    assert run.data.tags["mlflow.parentRunId"] == parent
    for tag in ("dataset", "method", "preset", "seed", "git_commit", "fidelity"):
        assert tag in run.data.tags
    history = client.get_metric_history(run_id, "class_il/avg_acc")
    assert [m.step for m in history] == [0, 1]
    R = metrics["class_il"]["accuracy_matrix"]
    assert history[1].value == (R[1][0] + R[1][1]) / 2
    assert run.data.metrics["class_il/final_avg_acc"] == metrics["class_il"]["final_avg_acc"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"metrics.json", "accuracy_matrix.png"}
    # Logging the same run folder again replaces the record instead of adding a second child.
    log_run(metrics, tmp_path / "run", uri, parent_run_id=parent)
    children = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 1


def test_no_mlflow_without_a_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["train", "--out", "run", "--quiet", "--preset", "base", "--set", "scenario.n_tasks=1",
                 "--set", "runtime.device=cpu"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "metrics.json", "resolved_config.yaml"]
