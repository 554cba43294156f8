"""A finished run as an MLflow child run: params, per-task metrics, tags, dataset input, metrics.json and
its figure as artifacts, optionally the released model; tagged with its metrics.json digest, so a later
sync can skip it. A child run is found again by its ``wscl.run_key`` tag, so a rerun of the same job
replaces its earlier record instead of adding a second one."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

from wscl.method.metrics import read_metrics
from wscl.tracking.client import MAX_BATCH, mark_model_training, mlflow_client, with_retries
from wscl.tracking.rows import config_params, dataset_input, per_task_metrics, run_key

DIGEST_TAG = "wscl.metrics_sha256"


DATASET_TAG = "dataset_sha256"


class Destination(NamedTuple):
    """Where a run is logged: the tracking URI, the experiment by name (None: ``wscl-<dataset>``; a parent's
    experiment wins) and the parent run (None: a top-level run)."""
    uri: str
    experiment: str | None = None
    parent_run_id: str | None = None


class OpenRun(NamedTuple):
    """The child run :func:`wscl.tracking.live.start_live_run` opened while the run trained, and the tasks whose
    metrics :func:`wscl.tracking.live.log_task` logged to it already (they are not logged twice)."""
    run_id: str
    tasks_logged: set[int] | frozenset = frozenset()


def log_run(metrics: dict, out_dir: str | Path, to: Destination, opened: OpenRun | None = None) -> str:
    """Log a finished run to ``to``, into the run ``opened`` while it trained if there is one."""
    return with_retries(lambda: _log_run(metrics, out_dir, to, opened))


def experiment_for(client, metrics: dict, experiment: str | None, parent_run_id: str | None) -> str:
    if parent_run_id:
        return client.get_run(parent_run_id).info.experiment_id
    name = experiment or f"wscl-{metrics['dataset']}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    mark_model_training(client, experiment_id)
    return experiment_id


def new_child_run(client, metrics: dict, out_dir, experiment_id: str, parent_run_id: str | None,
                  with_dataset: bool = True) -> str:
    """A fresh child run for this run folder (earlier records of the same folder are deleted), with its
    dataset input (``with_dataset``; a run opened before training knows its data's digest only at the end)."""
    from wscl.core.provenance import dataset_identity
    key = run_key(out_dir)
    for old in client.search_runs([experiment_id], filter_string=f"tags.`wscl.run_key` = '{key}'"):
        client.delete_run(old.info.run_id)
    tags = {"dataset": metrics["dataset"], "method": metrics["method"], "preset": metrics["preset"],
            "seed": str(metrics["seed"]), "fidelity": metrics["fidelity"], "git_commit": metrics["git_commit"],
            "device": metrics["device"], "wscl.run_key": key}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=tags,
                            run_name=f"{metrics['method']}-{metrics['preset']}-seed{metrics['seed']}")
    if with_dataset:
        client.log_inputs(run.info.run_id, datasets=[dataset_input(dataset_identity(metrics))])
    return run.info.run_id


def _log_run(metrics: dict, out_dir: str | Path, to: Destination, opened: OpenRun | None = None) -> str:
    import matplotlib.pyplot as plt

    from wscl.run.figures import run_accuracy_figure  # matplotlib (Agg): only when a run is logged

    uri = to.uri
    client = mlflow_client(uri)
    if opened is None:
        experiment_id = experiment_for(client, metrics, to.experiment, to.parent_run_id)
        run_id = new_child_run(client, metrics, out_dir, experiment_id, to.parent_run_id)
        tasks_logged = frozenset()
    else:  # the run opened live: its dataset input, now that the run has read (and digested) its data
        from wscl.core.provenance import dataset_identity
        run_id, tasks_logged = opened
        client.log_inputs(run_id, datasets=[dataset_input(dataset_identity(metrics))])
    params = config_params(metrics["config"])
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i: i + 100])
    values = per_task_metrics(metrics, skip_tasks=set(tasks_logged))
    for i in range(0, len(values), MAX_BATCH):
        client.log_batch(run_id, metrics=values[i: i + MAX_BATCH])
    if metrics.get("dataset_sha256"):  # the content digest the trainer verified before training on it
        client.set_tag(run_id, DATASET_TAG, metrics["dataset_sha256"])
    client.log_artifact(run_id, str(Path(out_dir) / "metrics.json"))
    if metrics["config"]["runtime"].get("mlflow_log_model"):
        log_model(uri, run_id, Path(out_dir))
    figure = run_accuracy_figure(metrics)
    client.log_figure(run_id, figure, "accuracy_matrix.png")
    plt.close(figure)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_model(uri: str, run_id: str, out_dir: Path) -> None:
    """The run's released network (model.pt, wscl/run/release.py) as an MLflow PyTorch model of the run, with
    model.pt itself beside it (what ``wscl evaluate`` reads)."""
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    from wscl.run.release import FILE_NAME, build_network, load_model
    model = load_model(out_dir / FILE_NAME)
    example = np.zeros((1, *model["image_shape"]), dtype=np.float32)  # a normalised batch: the signature
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        # pickle, not pt2: an exported graph is fixed to the example's batch size; loading needs wscl installed
        mlflow.pytorch.log_model(build_network(model, "cpu"), name="model", input_example=example,
                                 serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        mlflow.log_artifact(str(out_dir / FILE_NAME), "released")


def digest(content: bytes) -> str:
    """The metrics digest tagged on a logged run and kept in a pending marker."""
    return hashlib.sha256(content).hexdigest()


def metrics_digest(metrics_file: str | Path) -> str | None:
    """The digest of a metrics.json as it is on disk; None when it cannot be read (whoever needs its content
    reads it with ``read_metrics``, which names the problem and the fix)."""
    try:
        return digest(Path(metrics_file).read_bytes())
    except OSError:
        return None


def log_run_marked(metrics_file: str | Path, to: Destination, opened: OpenRun | None = None,
                   read: tuple[dict, bytes] | None = None) -> str:
    """Log a finished run and tag it with its metrics.json digest, so a later sync can skip it. ``read``: the
    file's ``read_metrics`` result when the caller has it already."""
    metrics, content = read or read_metrics(metrics_file)  # read once: the tag names exactly what was logged
    run_id = log_run(metrics, Path(metrics_file).parent, to, opened)
    with_retries(lambda: mlflow_client(to.uri).set_tag(run_id, DIGEST_TAG, digest(content)))
    return run_id


def logged_digests(uri: str, experiment_id: str) -> dict[str, str]:
    """run key -> metrics digest of every active child run of an experiment."""
    client = mlflow_client(uri)
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            if "wscl.run_key" in run.data.tags:  # parents have none
                found[run.data.tags["wscl.run_key"]] = run.data.tags.get(DIGEST_TAG)
        token = page.token
        if not token:
            return found


def child_run_ids(uri: str, experiment: str) -> dict[str, str]:
    """run key (the run folder) -> MLflow run id, for every child run of the experiment."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs([found.experiment_id], max_results=50000)
    return {r.data.tags["wscl.run_key"]: r.info.run_id for r in runs if "wscl.run_key" in r.data.tags}
