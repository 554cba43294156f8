"""Released models (wscl/run/release.py): every run saves its final network in a documented file that loads without
pickled code, `wscl evaluate` reproduces the run's final accuracy row from it, and it reaches MLflow as a
model and the archive on request."""
import json

import pytest
import torch
from conftest import tiny_config

from wscl.cli import main
from wscl.core.errors import ExitCode
from wscl.run import release

CFG = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 2})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A `full` run trained through the CLI (freezing, NREM, plasticity and REM all change the network)."""
    out = tmp_path_factory.mktemp("released") / "run"
    assert main(["train", "--config-json", json.dumps(CFG.to_dict()), "--out", str(out), "--quiet",
                 "--mlflow-uri", "none"]) == 0
    return out


def test_the_model_file_loads_without_pickled_code_and_holds_what_it_documents(trained):
    model = torch.load(trained / release.FILE_NAME, weights_only=True)
    assert model["format"] == release.FORMAT and model["format_version"] == release.FORMAT_VERSION
    assert model["config"] == json.loads((trained / "metrics.json").read_text())["config"]
    net = release.build_network(model, "cpu")
    assert net.classifier.out_features == model["architecture"]["n_heads"]
    metrics = json.loads((trained / "metrics.json").read_text())
    T = len(metrics["class_il"]["accuracy_matrix"])
    for setting in ("class_il", "task_il"):
        assert model["final_accuracy"][setting] == pytest.approx(metrics[setting]["accuracy_matrix"][T - 1],
                                                                 abs=1e-6)
    seen = [h for h in model["class_to_head"] if h >= 0]
    assert len(seen) == T * CFG.scenario.classes_per_task and len(set(seen)) == len(seen)


def test_wscl_evaluate_reproduces_the_runs_final_row_exactly(trained, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(trained / release.FILE_NAME), "--out", str(out)]) == ExitCode.OK
    result = json.loads(out.read_text())
    model = torch.load(trained / release.FILE_NAME, weights_only=True)
    assert result["final_accuracy"] == model["final_accuracy"] and result["matches_recorded"]
    assert "the same row as recorded when the run finished" in capsys.readouterr().out


def test_evaluate_sees_a_changed_network(trained, tmp_path):
    """The row comes from the weights: a zeroed classifier no longer reproduces it."""
    model = release.load_model(trained / release.FILE_NAME)
    model["state_dict"]["classifier.weight"].zero_()
    model["state_dict"]["classifier.bias"].zero_()
    result = release.evaluate(model)
    assert not result["matches_recorded"]
    assert all(v <= 100.0 / CFG.scenario.classes_per_task for v in result["final_accuracy"]["task_il"])


def test_a_damaged_model_file_is_refused_with_one_line(trained, tmp_path, capsys):
    path = tmp_path / release.FILE_NAME
    for suffix in ("", ".sha256"):
        path.with_name(path.name + suffix).write_bytes(trained.joinpath(release.FILE_NAME + suffix).read_bytes())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["evaluate", str(path)]) == ExitCode.RUN_RESULT_INVALID
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{path} differs from its digest" in err


def test_on_request_the_model_is_logged_to_mlflow_and_loads_back_as_the_same_network(tmp_path, monkeypatch):
    import mlflow.pytorch
    from mlflow.tracking import MlflowClient
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 1}, preset="base",
                      runtime={"mlflow_log_model": True})
    assert main(["train", "--config-json", json.dumps(cfg.to_dict()), "--out", "run", "--quiet", "--mlflow-uri", uri,
                 "--mlflow-experiment", "released"]) == 0
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("released").experiment_id])
    assert "released" in [a.path for a in client.list_artifacts(run.info.run_id)]
    models = client.search_logged_models([run.info.experiment_id])
    assert len(models) == 1 and models[0].source_run_id == run.info.run_id
    mlflow.set_tracking_uri(uri)
    logged = mlflow.pytorch.load_model(models[0].model_uri)
    saved = release.build_network(release.load_model(tmp_path / "run" / release.FILE_NAME), "cpu")
    x = torch.randn(4, *release.load_model(tmp_path / "run" / release.FILE_NAME)["image_shape"])
    with torch.inference_mode():
        assert torch.equal(logged.eval()(x), saved(x))

