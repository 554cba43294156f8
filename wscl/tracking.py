"""MLflow tracking of a finished run: params, per-task metrics (``step`` = task), tags and artifacts.

Nothing here runs without a tracking URI. A child run is found again by its ``wscl.run_key`` tag, so a
rerun of the same job replaces its earlier record instead of adding a second one.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from .config import flatten
from .metrics import SUMMARY_KEYS

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def tracking_uri(explicit: str | None) -> str | None:
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or None


def run_key(out_dir: str | Path) -> str:
    """Identifies a run by its output folder, relative to the working directory (the workflow root)."""
    path = Path(out_dir).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def per_task_metrics(metrics: dict) -> list:
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    rows = []
    for setting in ("class_il", "task_il"):
        R = metrics[setting]["accuracy_matrix"]
        for t, row in enumerate(R):
            seen = [v for v in row[: t + 1] if v is not None]
            if len(seen) == t + 1:
                rows.append(Metric(f"{setting}/avg_acc", sum(seen) / len(seen), now, t))
            for j, v in enumerate(row[: t + 1]):
                rows.append(Metric(f"{setting}/acc_task_{j}", v, now, t))
        for key in SUMMARY_KEYS:
            rows.append(Metric(f"{setting}/{key}", metrics[setting][key], now, len(R) - 1))
    for t, frozen in enumerate(metrics["frozen_blocks_per_task"]):
        rows.append(Metric("frozen_blocks", frozen, now, t))
    for phase, seconds in metrics["wall_seconds"].items():
        rows.append(Metric(f"wall_seconds/{phase}", seconds, now, 0))
    if metrics.get("train_images_per_second"):
        rows.append(Metric("train_images_per_second", metrics["train_images_per_second"], now, 0))
    return rows


def accuracy_figure(metrics: dict, path: Path) -> None:
    from .plots import accuracy_matrix_figure
    accuracy_matrix_figure([metrics["class_il"]["accuracy_matrix"], metrics["task_il"]["accuracy_matrix"]],
                           ["Class-IL", "Task-IL"], f"{metrics['dataset']} {metrics['method']} "
                           f"{metrics['preset']} seed {metrics['seed']} ({metrics['fidelity']})", path)


GROUP_TAG = "wscl.group"


class TrackingError(RuntimeError):
    """The MLflow store lacks what a run needs (an experiment or parent run)."""


def _client(uri: str):
    from mlflow.tracking import MlflowClient
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def with_retries(fn, attempts: int = 8):
    """SQLite stores allow one writer at a time: retry briefly when parallel jobs collide."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # MlflowException / sqlalchemy OperationalError wrap "database is locked"
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)


def setup_study(uri: str, experiment: str, artifact_root: str | None, groups: list[str]) -> dict:
    """Create (if missing) the experiment and one parent run per group; idempotent."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = str(Path(artifact_root).resolve()) if artifact_root else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    parents = {}
    for group in groups:
        existing = client.search_runs([experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'")
        if existing:
            parents[group] = existing[0].info.run_id
        else:
            run = client.create_run(experiment_id, run_name=group, tags={GROUP_TAG: group})
            client.set_terminated(run.info.run_id, "FINISHED")
            parents[group] = run.info.run_id
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": experiment_id, "parents": parents}


def find_parent(uri: str, experiment: str, group: str) -> str:
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'") if found else []
    if not runs:
        raise TrackingError(f"no MLflow parent run for group {group!r} in experiment {experiment!r} at {uri}; "
                           "run `python -m wscl mlflow-setup` (the workflow's mlflow_setup rule) first")
    return runs[0].info.run_id


def log_run(metrics: dict, out_dir: str | Path, uri: str, experiment: str | None = None,
            parent_run_id: str | None = None, run_name: str | None = None) -> str:
    return with_retries(lambda: _log_run(metrics, out_dir, uri, experiment, parent_run_id, run_name))


def _log_run(metrics: dict, out_dir: str | Path, uri: str, experiment: str | None,
             parent_run_id: str | None, run_name: str | None) -> str:
    from mlflow.entities import Param

    client = _client(uri)
    if parent_run_id:
        experiment_id = client.get_run(parent_run_id).info.experiment_id
    else:
        name = experiment or f"wscl-{metrics['dataset']}"
        found = client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else client.create_experiment(name)
    key = run_key(out_dir)
    for old in client.search_runs([experiment_id], filter_string=f"tags.`wscl.run_key` = '{key}'"):
        client.delete_run(old.info.run_id)
    tags = {"dataset": metrics["dataset"], "method": metrics["method"], "preset": metrics["preset"],
            "seed": str(metrics["seed"]), "fidelity": metrics["fidelity"], "git_commit": metrics["git_commit"],
            "device": metrics["device"], "wscl.run_key": key}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, tags=tags,
                            run_name=run_name or f"{metrics['method']}-{metrics['preset']}-seed{metrics['seed']}")
    run_id = run.info.run_id
    params = [Param(k, str(v)[:500]) for k, v in sorted(flatten(metrics["config"]).items())]
    for i in range(0, len(params), 100):
        client.log_batch(run_id, params=params[i: i + 100])
    values = per_task_metrics(metrics)
    for i in range(0, len(values), MAX_BATCH):
        client.log_batch(run_id, metrics=values[i: i + MAX_BATCH])
    client.log_artifact(run_id, str(Path(out_dir) / "metrics.json"))
    with tempfile.TemporaryDirectory() as tmp:
        figure = Path(tmp) / "accuracy_matrix.png"
        accuracy_figure(metrics, figure)
        client.log_artifact(run_id, str(figure))
    client.set_terminated(run_id, "FINISHED")
    return run_id


# --- A study's MLflow destination from results/mlflow/setup.json, and re-logging finished runs to it. ---
# Training jobs read the destination and parent ids from setup.json (written once by the mlflow_setup rule)
# instead of taking them as rule parameters: moving a study to another store then reruns no training.

DIGEST_TAG = "wscl.metrics_sha256"


def load_setup(path: str | Path) -> dict:
    """The tracking URI, experiment and parent run ids that `wscl mlflow-setup --out` wrote."""
    try:
        setup = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TrackingError(f"cannot read the MLflow setup {path}: {exc}; run `wscl mlflow-setup` first") from exc
    return setup


def parent_from_setup(setup: dict, group: str) -> str:
    try:
        return setup["parents"][group]
    except KeyError:
        raise TrackingError(f"no parent run for group {group!r} in the MLflow setup of experiment "
                            f"{setup.get('experiment')!r}; rerun `wscl mlflow-setup` with this group") from None


def metrics_digest(metrics_file: str | Path) -> str:
    return hashlib.sha256(Path(metrics_file).read_bytes()).hexdigest()


def log_run_marked(metrics_file: str | Path, uri: str, parent_run_id: str) -> str:
    """Log a finished run and tag it with its metrics.json digest, so a later sync can skip it."""
    metrics = json.loads(Path(metrics_file).read_text())
    out_dir = Path(metrics_file).parent
    run_id = log_run(metrics, out_dir, uri, parent_run_id=parent_run_id)
    with_retries(lambda: _client(uri).set_tag(run_id, DIGEST_TAG, metrics_digest(metrics_file)))
    return run_id


def logged_digests(uri: str, experiment_id: str) -> dict[str, str]:
    """run key -> metrics digest of every active child run of an experiment."""
    client = _client(uri)
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        for run in page:
            if "wscl.run_key" in run.data.tags:  # parents have none
                found[run.data.tags["wscl.run_key"]] = run.data.tags.get(DIGEST_TAG)
        token = page.token
        if not token:
            return found


def sync_runs(setup: dict, runs: list[tuple[str, str]], log=print) -> dict:
    """Log every finished run (group, run folder) that the destination lacks or holds in another version.

    Idempotent: a run whose metrics.json digest is already tagged on its child run is left alone.
    """
    uri = setup["tracking_uri"]
    present = logged_digests(uri, setup["experiment_id"])
    report = {"tracking_uri": uri, "experiment": setup["experiment"], "logged": [], "unchanged": [], "missing": []}
    for group, out_dir in runs:
        metrics_file = Path(out_dir) / "metrics.json"
        if not metrics_file.exists():
            report["missing"].append(out_dir)
        elif present.get(run_key(out_dir)) == metrics_digest(metrics_file):
            report["unchanged"].append(out_dir)
        else:
            log_run_marked(metrics_file, uri, parent_from_setup(setup, group))
            report["logged"].append(out_dir)
            log(f"logged {out_dir}")
    return report
