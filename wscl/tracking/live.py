"""Per-task metrics while a run trains (with a tracking server): the child run opened at the start, one
batch of metrics per finished task, MLflow's system metrics on request."""
from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from wscl.settings.config import Config
from wscl.tracking.client import MAX_BATCH, mlflow_client, tracking_uri, unreachable, with_retries
from wscl.tracking.parents import find_parent, load_setup, parent_from_setup
from wscl.tracking.rows import task_metrics
from wscl.tracking.runs import experiment_for, new_child_run


def live_tracking(uri: str | None) -> bool:
    """Per-task metrics go to MLflow as each task finishes only with a tracking server: with a shared SQLite
    file every running job would be one more writer for the whole of its training."""
    return bool(uri) and uri.split(":", 1)[0] in ("http", "https")


def start_live_run(cfg: Config, out_dir: str | Path, uri: str, experiment: str | None = None,
                   parent_run_id: str | None = None) -> str:
    """Open the child run of a run about to train (status RUNNING; :func:`log_run` finishes it)."""
    from wscl.core.provenance import git_commit
    header = {"dataset": cfg.dataset.name, "method": cfg.training.method, "preset": cfg.preset,
              "seed": cfg.seed, "fidelity": cfg.fidelity, "config": cfg.to_dict(), "git_commit": git_commit(),
              "device": str(cfg.runtime.device),
              "dataset_checksums_verified": True}  # the trainer verifies every prepared dataset it reads

    def start() -> str:
        client = mlflow_client(uri)
        experiment_id = experiment_for(client, header, experiment, parent_run_id)
        return new_child_run(client, header, out_dir, experiment_id, parent_run_id, with_dataset=False)
    return with_retries(start)


def log_task(run_id: str, uri: str, metrics_so_far: dict, task: int) -> None:
    """Log the metrics of one finished task (0-based) to an open run, in ``log_batch`` calls of at most
    ``MAX_BATCH`` metrics.

    ``metrics_so_far``: the trainer's ``metrics()`` right after that task (rows of later tasks may be None)."""
    rows = task_metrics(metrics_so_far, task)
    for i in range(0, len(rows), MAX_BATCH):
        with_retries(lambda i=i: mlflow_client(uri).log_batch(run_id, metrics=rows[i: i + MAX_BATCH]))


def mlflow_destination(setup_file: str | None, group: str | None, parent: str | None, uri: str | None,
                       experiment: str | None) -> tuple[str | None, str | None]:
    """(tracking URI, parent run id) of a training job, resolved before training so that a missing parent fails
    fast: from the study's setup.json when there is one, else from the URI (``none`` = no MLflow) and group."""
    if setup_file:
        setup = load_setup(setup_file)
        return setup["tracking_uri"], parent or (parent_from_setup(setup, group) if group else None)
    uri = tracking_uri(uri)
    if uri and group and not parent:
        parent = find_parent(uri, experiment, group)
    return uri, parent


class LiveRun:
    """Per-task MLflow logging while a run trains: the trainer calls ``on_task_end(metrics_so_far, task)``."""

    def __init__(self, run_id: str | None = None, uri: str | None = None):
        self.run_id, self.uri, self.tasks = run_id, uri, set()
        self.task_end = self.on_task_end if run_id else None  # what the trainer calls after each task

    @contextmanager
    def system_metrics(self, cfg: Config):
        """MLflow's system metrics (CPU, memory, GPU) sampled into the live run while training, when
        ``runtime.mlflow_system_metrics_every`` (seconds; 0 = off) asks for them."""
        every = cfg.runtime.mlflow_system_metrics_every
        if not (self.run_id and every):
            yield
            return
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=every, tracking_uri=self.uri)
        monitor.start()
        try:
            yield
        finally:
            monitor.finish()

    def on_task_end(self, metrics_so_far: dict, task: int) -> None:
        try:
            log_task(self.run_id, self.uri, metrics_so_far, task)
            self.tasks.add(task)
        except Exception as exc:  # a tracking hiccup must not stop a long training; log_run fills the gap
            print(f"MLflow: task {task} not logged live ({exc}); it is logged when the run ends", file=sys.stderr)


def live_run(cfg: Config, out_dir: str | Path, uri: str | None, experiment: str | None, parent: str | None) -> LiveRun:
    """A live MLflow run when there is a tracking server (a SQLite store gets the run once, at the end, unless
    ``runtime.mlflow_system_metrics_every`` asks for system metrics, which are sampled while the run trains)."""
    if not (live_tracking(uri) or (uri and cfg.runtime.mlflow_system_metrics_every)):
        return LiveRun()
    try:
        return LiveRun(start_live_run(cfg, out_dir, uri, experiment, parent), uri)
    except Exception as exc:  # the server is down: train anyway; the finished run is logged or marked pending
        print(f"warning: {unreachable(uri, exc)}; training without live metrics", file=sys.stderr)
        return LiveRun()
