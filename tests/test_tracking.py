import copy
import shutil

import pytest
from conftest import tiny_config
from mlflow.tracking import MlflowClient

from wscl.cli import main
from wscl.run.trainer import Run
from wscl.tracking.runs import Destination, OpenRun, log_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One tiny finished run (2 tasks): its config, metrics and folder."""
    cfg = tiny_config(scenario={"n_tasks": 2})
    out = tmp_path_factory.mktemp("finished") / "run"
    return cfg, Run(cfg, out, quiet=True, log=lambda *_: None).run(), out


def test_run_is_logged_with_params_per_task_metrics_tags_and_artifacts(finished, tmp_path):
    _, metrics, out = finished
    shutil.copytree(out, tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp).info.run_id
    run_id = log_run(metrics, tmp_path / "run", Destination(uri, parent_run_id=parent))
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
    log_run(metrics, tmp_path / "run", Destination(uri, parent_run_id=parent))
    children = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(children) == 1


@pytest.mark.parametrize("switched_off", [False, True], ids=["no uri", "--mlflow-uri none over the variable"])
def test_no_mlflow_without_a_uri(tmp_path, monkeypatch, switched_off):
    monkeypatch.chdir(tmp_path)
    if switched_off:  # the variable names a store that the run would create in tmp_path
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    else:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["train", "--out", "run", "--quiet", "--preset", "base", "--set", "scenario.n_tasks=1",
                 "--set", "runtime.device=cpu", *(["--mlflow-uri", "None"] if switched_off else [])]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    written = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert written == [name + seal for name in ("checkpoint.pt", "metrics.json", "model.pt", "resolved_config.yaml")
                       for seal in ("", ".sha256")]


def test_live_per_task_metrics_then_the_finished_run_without_duplicates(finished, tmp_path):
    from wscl.tracking.live import live_tracking, log_task, start_live_run
    cfg, metrics, out = finished
    metrics = copy.deepcopy(metrics)
    shutil.copytree(out, tmp_path / "run")
    metrics["config"]["notes"] = "x" * 2000  # a long setting is kept whole (MLflow allows 6000 characters)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("study", artifact_location=str(tmp_path / "artifacts"))
    parent = client.create_run(exp).info.run_id
    run_id = start_live_run(cfg, tmp_path / "run", uri, parent_run_id=parent)
    assert client.get_run(run_id).info.status == "RUNNING"
    log_task(run_id, uri, metrics, 0)  # as the trainer would after task 1
    assert [m.step for m in client.get_metric_history(run_id, "class_il/avg_acc")] == [0]
    assert log_run(metrics, tmp_path / "run", Destination(uri, parent_run_id=parent), OpenRun(run_id, {0})) == run_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == parent
    for key in ("class_il/avg_acc", "class_il/acc_task_0", "frozen_blocks"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [0, 1]
    assert run.data.params["notes"] == "x" * 2000
    [dataset] = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == metrics["dataset"] == "synthetic" and dataset.digest == metrics["dataset_sha256"][:36]
    assert dataset.source_type == "code"
    assert live_tracking("http://mlflow:5000") and not live_tracking(uri) and not live_tracking(None)


def test_a_prepared_dataset_is_an_input_with_its_content_sha256(tmp_path):
    import json

    from wscl.core.provenance import dataset_identity
    from wscl.tracking.rows import dataset_input
    sha = "0123456789abcdef" * 4
    (tmp_path / "seq-x").mkdir()
    (tmp_path / "seq-x/meta.json").write_text(json.dumps({"sha256": sha, "source": "official mirror"}))
    metrics = {"dataset": "seq-x", "config": {"dataset": {"name": "seq-x", "root": str(tmp_path)}},
               "dataset_checksums_verified": True}
    ident = dataset_identity(metrics)
    assert ident == {"name": "seq-x", "sha256": sha, "source": "official mirror", "verified": True, "digest": sha,
                     "generated": False}
    assert dataset_identity({**metrics, "dataset_sha256": "f" * 64})["sha256"] == "f" * 64  # metrics.json wins
    entry = dataset_input(ident).dataset
    assert sha.startswith(entry.digest) and len(entry.digest) == 36 and json.loads(entry.profile)["sha256"] == sha


def test_the_metrics_digest_of_an_unreadable_file_is_none_not_a_traceback(tmp_path):
    """A pending marker is written when logging failed; its digest read must not fail in turn."""
    import json

    from wscl.tracking.pending import PENDING, mark_pending
    from wscl.tracking.runs import digest, metrics_digest
    assert metrics_digest(tmp_path / "missing/metrics.json") is None
    (tmp_path / "metrics.json").mkdir()  # a folder where the file should be: unreadable
    assert metrics_digest(tmp_path / "metrics.json") is None
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_bytes(b'{"a": 1}')
    assert metrics_digest(run / "metrics.json") == digest(b'{"a": 1}')
    (run / "metrics.json").unlink()
    marker = mark_pending(run, {"tracking_uri": "sqlite:///x.db", "experiment": "e"}, RuntimeError("down"))
    assert marker == run / PENDING and json.loads(marker.read_text())["metrics_sha256"] is None
