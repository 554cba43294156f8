"""MLflow tracking of a finished run: params, per-task metrics (``step`` = task), tags, its dataset as an
MLflow dataset input, and artifacts; per-task metrics while a run trains (with a tracking server); and the
seed statistics and reproduction verdicts on the parent runs once a study is aggregated.

Nothing here runs without a tracking URI. A child run is found again by its ``wscl.run_key`` tag, so a
rerun of the same job replaces its earlier record instead of adding a second one.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from .config import flatten
from .dynamics import step_metrics
from .errors import RunResultError, TrackingError
from .metrics import SUMMARY_KEYS, read_metrics

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call
# The experiment tag by which the MLflow UI (3.x) opens an experiment as model training, not GenAI.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
NO_TRACKING = "none"  # --mlflow-uri none: no MLflow, even with $MLFLOW_TRACKING_URI set


def tracking_uri(explicit: str | None) -> str | None:
    if explicit is not None and explicit.strip().lower() == NO_TRACKING:
        return None
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or None


def run_key(out_dir: str | Path) -> str:
    """Identifies a run by its output folder, relative to the working directory (the workflow root)."""
    path = Path(out_dir).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def per_task_metrics(metrics: dict, skip_tasks: set[int] | frozenset = frozenset()) -> list:
    """Every metric of a finished run; the per-task rows of ``skip_tasks`` (logged live) are left out."""
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    rows = []
    for setting in ("class_il", "task_il"):
        R = metrics[setting]["accuracy_matrix"]
        for t, row in enumerate(R):
            if t in skip_tasks:
                continue
            seen = [v for v in row[: t + 1] if v is not None]
            if len(seen) == t + 1:
                rows.append(Metric(f"{setting}/avg_acc", sum(seen) / len(seen), now, t))
            for j, v in enumerate(row[: t + 1]):
                rows.append(Metric(f"{setting}/acc_task_{j}", v, now, t))
        for key in SUMMARY_KEYS:
            rows.append(Metric(f"{setting}/{key}", metrics[setting][key], now, len(R) - 1))
    for t, frozen in enumerate(metrics["frozen_blocks_per_task"]):
        if t not in skip_tasks:
            rows.append(Metric("frozen_blocks", frozen, now, t))
    for t, task in enumerate(metrics.get("tasks", [])):  # exploded losses and collapses reported in task t
        if t not in skip_tasks:
            rows.append(Metric("training_failures", len(task.get("training_failures", [])), now, t))
    tasks = metrics.get("tasks", [])
    rows.extend(Metric(k, v, now, step) for k, v, step in step_metrics(tasks, set(range(len(tasks))) - skip_tasks))
    for phase, seconds in metrics["wall_seconds"].items():
        rows.append(Metric(f"wall_seconds/{phase}", seconds, now, 0))
    for key in ("peak_device_memory_mb", "peak_rss_mb"):
        if metrics.get(key) is not None:
            rows.append(Metric(key, metrics[key], now, 0))
    if metrics.get("train_images_per_second"):
        rows.append(Metric("train_images_per_second", metrics["train_images_per_second"], now, 0))
    return rows


def accuracy_figure(metrics: dict, path: Path | None = None):
    """The run's Class-IL and Task-IL accuracy matrices; saved to ``path``, or returned as a figure."""
    from .plots import accuracy_matrix_figure
    return accuracy_matrix_figure([metrics["class_il"]["accuracy_matrix"], metrics["task_il"]["accuracy_matrix"]],
                                  ["Class-IL", "Task-IL"], f"{metrics['dataset']} {metrics['method']} "
                                  f"{metrics['preset']} seed {metrics['seed']} ({metrics['fidelity']})", path)


GROUP_TAG = "wscl.group"


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
    mark_model_training(client, experiment_id)
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
            parent_run_id: str | None = None, run_name: str | None = None, run_id: str | None = None,
            tasks_logged: set[int] | frozenset = frozenset()) -> str:
    """Log a finished run as a child of ``parent_run_id``. ``run_id``: the run :func:`start_live_run` opened;
    the per-task metrics of ``tasks_logged`` were logged live by :func:`log_task` and are not logged twice."""
    return with_retries(lambda: _log_run(metrics, out_dir, uri, experiment, parent_run_id, run_name, run_id,
                                         tasks_logged))


def _experiment_for(client, metrics: dict, experiment: str | None, parent_run_id: str | None) -> str:
    if parent_run_id:
        return client.get_run(parent_run_id).info.experiment_id
    name = experiment or f"wscl-{metrics['dataset']}"
    found = client.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else client.create_experiment(name)
    mark_model_training(client, experiment_id)
    return experiment_id


def _new_run(client, metrics: dict, out_dir, experiment_id: str, parent_run_id: str | None,
             run_name: str | None) -> str:
    """A fresh child run for this run folder (earlier records of the same folder are deleted), with its
    dataset input."""
    from .provenance import dataset_identity
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
    client.log_inputs(run.info.run_id, datasets=[dataset_input(dataset_identity(metrics))])
    return run.info.run_id


def _log_run(metrics: dict, out_dir: str | Path, uri: str, experiment: str | None,
             parent_run_id: str | None, run_name: str | None, run_id: str | None = None,
             tasks_logged: set[int] | frozenset = frozenset()) -> str:
    import matplotlib.pyplot as plt

    client = _client(uri)
    if run_id is None:
        experiment_id = _experiment_for(client, metrics, experiment, parent_run_id)
        run_id = _new_run(client, metrics, out_dir, experiment_id, parent_run_id, run_name)
        tasks_logged = frozenset()
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
    figure = accuracy_figure(metrics)
    client.log_figure(run_id, figure, "accuracy_matrix.png")
    plt.close(figure)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def log_model(uri: str, run_id: str, out_dir: Path) -> None:
    """The run's released network (model.pt, wscl/release.py) as an MLflow PyTorch model of the run, with
    model.pt itself beside it (what ``wscl evaluate`` reads)."""
    import mlflow
    import mlflow.pytorch

    from .release import FILE_NAME, build_network, load_model
    import numpy as np
    import torch
    model = load_model(out_dir / FILE_NAME)
    example = np.zeros((1, *model["image_shape"]), dtype=np.float32)  # a normalised batch: the signature
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=run_id):
        # pickle, not pt2: an exported graph is fixed to the example's batch size; loading needs wscl installed
        mlflow.pytorch.log_model(build_network(model, "cpu"), name="model", input_example=example,
                                 serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        mlflow.log_artifact(str(out_dir / FILE_NAME), "released")


def config_params(config: dict) -> list:
    """The run's settings as MLflow params, each value cut only at MLflow's own length limit."""
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    return [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(flatten(config).items())]


# -- experiment kind, dataset inputs -----------------------------------------------------------------

def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment so that the MLflow UI opens it as a model-training experiment (its runs table)."""
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)


def dataset_input(ident: dict, context: str = "train"):
    """A dataset identity (provenance.dataset_identity) as an MLflow dataset input: name; digest = the
    content SHA-256 ("generated" for `synthetic`); source. MLflow caps a digest at 36 characters, so the
    digest holds the SHA-256's first 36 hex digits and the dataset's profile holds all of it."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE
    profile = json.dumps({"sha256": ident["sha256"], "checksums_verified": ident["verified"]})
    dataset = Dataset(name=ident["name"], digest=ident["digest"][:MAX_DATASET_DIGEST_SIZE],
                      source_type="code" if ident["sha256"] is None else "local",
                      source=json.dumps({"uri": ident["source"]}), profile=profile)
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])


# -- live per-task metrics (with a tracking server) ----------------------------------------------------

def live_tracking(uri: str | None) -> bool:
    """Per-task metrics go to MLflow as each task finishes only with a tracking server: with a shared SQLite
    file every running job would be one more writer for the whole of its training."""
    return bool(uri) and uri.split(":", 1)[0] in ("http", "https")


def start_live_run(cfg: dict, out_dir: str | Path, uri: str, experiment: str | None = None,
                   parent_run_id: str | None = None) -> str:
    """Open the child run of a run about to train (status RUNNING; :func:`log_run` finishes it)."""
    from .provenance import git_commit
    header = {"dataset": cfg["dataset"]["name"], "method": cfg["training"]["method"], "preset": cfg["preset"],
              "seed": cfg["seed"], "fidelity": cfg["fidelity"], "config": cfg, "git_commit": git_commit(),
              "device": str(cfg.get("runtime", {}).get("device", "")),
              "dataset_checksums_verified": cfg.get("data", {}).get("verify_checksums", True)}

    def start() -> str:
        client = _client(uri)
        experiment_id = _experiment_for(client, header, experiment, parent_run_id)
        return _new_run(client, header, out_dir, experiment_id, parent_run_id, None)
    return with_retries(start)


def task_metrics(metrics_so_far: dict, task: int) -> list:
    """The per-task metrics of ``task`` (0-based), as :func:`per_task_metrics` logs them (``step = task``)."""
    from mlflow.entities import Metric
    now = int(time.time() * 1000)
    rows = []
    for setting in ("class_il", "task_il"):
        row = metrics_so_far[setting]["accuracy_matrix"][task]
        seen = [v for v in row[: task + 1] if v is not None]
        if len(seen) == task + 1:
            rows.append(Metric(f"{setting}/avg_acc", sum(seen) / len(seen), now, task))
        rows.extend(Metric(f"{setting}/acc_task_{j}", v, now, task) for j, v in enumerate(row[: task + 1]))
    frozen = metrics_so_far.get("frozen_blocks_per_task", [])
    if task < len(frozen):
        rows.append(Metric("frozen_blocks", frozen[task], now, task))
    # the task's epochs: loss, images/s and peak memory per phase, step = the epoch's index in the run
    rows.extend(Metric(k, v, now, step) for k, v, step in step_metrics(metrics_so_far.get("tasks", []), {task}))
    return rows


def log_task(run_id: str, uri: str, metrics_so_far: dict, task: int) -> None:
    """Log the metrics of one finished task (0-based) to an open run, in ``log_batch`` calls of at most
    ``MAX_BATCH`` metrics.

    ``metrics_so_far``: the trainer's ``metrics()`` right after that task (rows of later tasks may be None)."""
    rows = task_metrics(metrics_so_far, task)
    for i in range(0, len(rows), MAX_BATCH):
        with_retries(lambda i=i: _client(uri).log_batch(run_id, metrics=rows[i: i + MAX_BATCH]))


# -- after aggregation: run ids, parent-run summaries ------------------------------------------------

def child_run_ids(uri: str, experiment: str) -> dict[str, str]:
    """run key (the run folder) -> MLflow run id, for every child run of the experiment."""
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client.search_runs([found.experiment_id], max_results=50000)
    return {r.data.tags["wscl.run_key"]: r.info.run_id for r in runs if "wscl.run_key" in r.data.tags}


def parent_metrics(row: dict) -> dict[str, float]:
    """A table row (aggregate.summary_table) as parent-run metrics: the seed mean of every final metric under
    the children's own key (so parents and children share columns), its std under ``<key>_std``, seeds."""
    from .metrics import SUMMARY_KEYS
    out = {"seeds": float(row["seeds"])}
    for setting in ("class_il", "task_il"):
        for key in SUMMARY_KEYS:
            mean, std = row.get(f"{setting}_{key}_mean"), row.get(f"{setting}_{key}_std")
            if mean is not None and mean == mean:
                out[f"{setting}/{key}"] = float(mean)
                out[f"{setting}/{key}_std"] = float(std) if std is not None and std == std else 0.0
    return out


def parent_tags(row: dict) -> dict[str, str]:
    """Coordinates and reproduction verdicts of a table row (verdicts by the rule of wscl/reproduction.py,
    as the tables show them), e.g. ``verdict.class_il.final_avg_acc = reproduced (+0.8 [-1.2, +2.8])``."""
    tags = {"method": str(row["method"]), "preset": str(row["preset"]), "fidelity": str(row["fidelity"]),
            "buffer": str(row["buffer"])}
    for metric in ("final_avg_acc", "forgetting"):
        word = row.get(f"verdict_class_il_{metric}")
        if isinstance(word, str) and word:
            low, high = row.get(f"diff_class_il_{metric}_low"), row.get(f"diff_class_il_{metric}_high")
            detail = "" if low is None or low != low else \
                f" ({row[f'diff_class_il_{metric}']:+.2f} [{low:+.2f}, {high:+.2f}])"
            tags[f"verdict.class_il.{metric}"] = word + detail
    return tags


def summarize_parents(uri: str, experiment: str, rows: dict[str, dict], datasets: dict[str, dict]) -> int:
    """Write each group's table row onto its parent run (seed mean/std metrics, verdict tags, the dataset
    input) and stretch the parent's end time to its last child's. Returns how many parents were updated."""
    from mlflow.entities import Metric, RunTag

    def update() -> int:
        client = _client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return 0
        mark_model_training(client, found.experiment_id)
        runs = client.search_runs([found.experiment_id], max_results=50000)
        parents = {r.data.tags[GROUP_TAG]: r for r in runs if GROUP_TAG in r.data.tags}
        ends: dict[str, int] = {}
        for r in runs:
            parent = r.data.tags.get("mlflow.parentRunId")
            if parent and r.info.end_time:
                ends[parent] = max(ends.get(parent, 0), r.info.end_time)
        now = int(time.time() * 1000)
        updated = 0
        for group, row in rows.items():
            parent = parents.get(group)
            if parent is None:
                continue
            run_id = parent.info.run_id
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in parent_metrics(row).items()],
                             tags=[RunTag(k, v) for k, v in parent_tags(row).items()])
            if group in datasets and not parent.inputs.dataset_inputs:
                client.log_inputs(run_id, datasets=[dataset_input(datasets[group])])
            end = max(ends.get(run_id, 0), parent.info.end_time or 0)
            client.set_terminated(run_id, "FINISHED", end_time=end or None)
            updated += 1
        return updated
    return with_retries(update)
# --- A study's MLflow destination from results/mlflow/setup.json, and re-logging finished runs to it. ---
# Training jobs read the destination and parent ids from setup.json (written once by the mlflow_setup rule)
# instead of taking them as rule parameters: moving a study to another store then reruns no training.

DIGEST_TAG = "wscl.metrics_sha256"
# mlflow-setup finds the experiment and parents it created before, so writing setup.json again loses nothing
SETUP_AGAIN = ("delete it and rerun the workflow (the mlflow_setup rule writes it again; runs logged before are "
               "kept), or `wscl mlflow-setup --out` it with the study's settings")
DATASET_TAG = "dataset_sha256"


def load_setup(path: str | Path) -> dict:
    """The tracking URI, experiment and parent run ids that `wscl mlflow-setup --out` wrote (and sealed)."""
    from .safe_io import read_result
    content = read_result(path, SETUP_AGAIN)
    try:
        return json.loads(content)
    except ValueError as exc:
        raise TrackingError(f"cannot read the MLflow setup {path}: {exc}; {SETUP_AGAIN}") from exc


def parent_from_setup(setup: dict, group: str) -> str:
    try:
        return setup["parents"][group]
    except KeyError:
        raise TrackingError(f"no parent run for group {group!r} in the MLflow setup of experiment "
                            f"{setup.get('experiment')!r}; rerun `wscl mlflow-setup` with this group") from None


def digest(content: bytes) -> str:
    """The metrics digest tagged on a logged run and kept in a pending marker."""
    return hashlib.sha256(content).hexdigest()


def metrics_digest(metrics_file: str | Path) -> str:
    return digest(Path(metrics_file).read_bytes())


def log_run_marked(metrics_file: str | Path, uri: str, parent_run_id: str | None, run_id: str | None = None,
                   tasks_logged: set[int] | frozenset = frozenset(), experiment: str | None = None) -> str:
    """Log a finished run and tag it with its metrics.json digest, so a later sync can skip it."""
    metrics, content = read_metrics(metrics_file)  # read once: the tag names exactly what was logged
    run_id = log_run(metrics, Path(metrics_file).parent, uri, experiment=experiment,
                     parent_run_id=parent_run_id, run_id=run_id, tasks_logged=tasks_logged)
    with_retries(lambda: _client(uri).set_tag(run_id, DIGEST_TAG, digest(content)))
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
    try:
        present = logged_digests(uri, setup["experiment_id"])
    except Exception as exc:  # server down, store locked past the retries: nothing is lost, sync again later
        raise TrackingError(unreachable(uri, exc) + "; every run stays in its metrics.json: rerun "
                            "`wscl mlflow-sync` (or the workflow) once the store is reachable") from exc
    report = {"tracking_uri": uri, "experiment": setup["experiment"], "logged": [], "unchanged": [], "missing": [],
              "busy": []}
    for group, out_dir in runs:
        metrics_file = Path(out_dir) / "metrics.json"
        if not metrics_file.exists():
            report["missing"].append(out_dir)
        elif present.get(run_key(out_dir)) == metrics_digest(metrics_file):
            remove_pending(out_dir)  # logged by another process since it was marked
            report["unchanged"].append(out_dir)
        else:
            with claimed(out_dir) as claim:
                if claim is False:
                    report["busy"].append(out_dir)
                    continue
                parent = parent_from_setup(setup, group)
                try:
                    log_run_marked(metrics_file, uri, parent)
                except RunResultError:
                    raise  # the run's own file is broken, not the store: its message says how to write it again
                except Exception as exc:
                    raise TrackingError(f"{out_dir}: {unreachable(uri, exc)}; the run stays in its metrics.json: "
                                        "rerun `wscl mlflow-sync` (or the workflow) once the store is reachable") \
                        from exc
            report["logged"].append(out_dir)
            log(f"logged {out_dir}")
    return report


# --- A finished run that could not be logged (tracking server down, SQLite locked past the retries) -----
# Its metrics.json is already written, so the job still succeeds; `mlflow_pending.json` in the run folder
# marks it as not yet logged and says where it goes. `wscl mlflow-sync` and the next `wscl aggregate` log it,
# once: a run folder has one child run (found by its run key), and a marker being logged is first renamed to
# a claim that a second process leaves alone.

PENDING = "mlflow_pending.json"
CLAIM = ".mlflow_pending.claim"
STALE_CLAIM_S = 3600  # a claim older than this was left by a process that died while logging


def unreachable(uri: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"MLflow at {uri} cannot be reached or written ({type(exc).__name__}: {first[:200]})"


def mark_pending(out_dir: str | Path, destination: dict, exc: BaseException) -> Path:
    """Record that the finished run in ``out_dir`` still has to be logged to ``destination``
    (tracking_uri, experiment, parent_run_id)."""
    from .safe_io import atomic_write_json
    path = Path(out_dir) / PENDING
    atomic_write_json(path, {**destination, "error": unreachable(destination["tracking_uri"], exc),
                             "metrics_sha256": metrics_digest(Path(out_dir) / "metrics.json"),
                             "marked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, sealed=True)
    return path


def remove_pending(out_dir: str | Path) -> None:
    from .safe_io import remove_quietly, seal_path
    remove_quietly(Path(out_dir) / PENDING)
    remove_quietly(seal_path(Path(out_dir) / PENDING))


def pending(out_dir: str | Path) -> dict | None:
    """The run's pending marker (None without one), checked against its digest: a damaged marker raises
    ``RunResultError`` saying how the run gets logged all the same."""
    from .safe_io import read_result
    marker = Path(out_dir) / PENDING
    if not marker.exists():
        return None
    content = read_result(marker, "delete it; the study's mlflow_sync rule (`wscl mlflow-sync --study-json ... "
                                  "--setup ...`) logs every finished run the store lacks, this one too")
    try:
        return json.loads(content)
    except ValueError:
        return {}


class claimed:
    """``with claimed(out_dir) as claim``: the pending marker (if any) renamed to a claim while the block logs
    the run; removed when it succeeds, put back when it fails. ``claim`` is False when another process holds
    a fresh claim (skip the run), else the marker's content or None (no marker)."""

    def __init__(self, out_dir: str | Path):
        self.marker, self.claim = Path(out_dir) / PENDING, Path(out_dir) / CLAIM
        self.held = False

    def __enter__(self):
        try:
            age = time.time() - self.claim.stat().st_mtime
            if age < STALE_CLAIM_S:
                return False
        except FileNotFoundError:
            pass
        try:
            os.replace(self.marker, self.claim)
        except FileNotFoundError:
            return None
        self.held = True
        os.utime(self.claim)
        try:
            return json.loads(self.claim.read_text())
        except (OSError, ValueError):
            return {}

    def __exit__(self, kind, exc, tb):
        if self.held:
            if kind is None:
                self.claim.unlink(missing_ok=True)
                from .safe_io import remove_quietly, seal_path
                remove_quietly(seal_path(self.marker))
            else:
                os.replace(self.claim, self.marker)
        return False


def log_finished(metrics_file: str | Path, destination: dict, run_id: str | None = None,
                 tasks_logged: set[int] | frozenset = frozenset(), log=print) -> str | None:
    """Log a finished run whose metrics.json is written; if the store cannot be reached, mark the run as not
    yet logged (mlflow_pending.json) and say so in one line instead of failing. Returns the run id or None."""
    out_dir = Path(metrics_file).parent
    try:
        run_id = log_run_marked(metrics_file, destination["tracking_uri"], destination.get("parent_run_id"),
                                run_id=run_id, tasks_logged=tasks_logged, experiment=destination.get("experiment"))
    except Exception as exc:  # noqa: BLE001 - any tracking failure: the finished run must not be lost
        marker = mark_pending(out_dir, destination, exc)
        log(f"warning: {unreachable(destination['tracking_uri'], exc)}; the run is complete in {metrics_file} and "
            f"marked as not yet logged ({marker}): `wscl mlflow-sync` or the next `wscl aggregate` logs it")
        return None
    remove_pending(out_dir)
    return run_id


def sync_pending(run_dirs: list[str | Path], log=print) -> dict:
    """Log every run folder that carries a pending marker to the destination the marker names (idempotent).

    A store still unreachable leaves the marker in place for the next try, as does a run whose metrics.json
    cannot be read (``invalid``: no retry helps; the log says how to write it again); returns
    logged/failed/busy/invalid."""
    report = {"logged": [], "failed": [], "busy": [], "invalid": []}
    for out_dir in run_dirs:
        try:
            marker = pending(out_dir)
        except RunResultError as exc:
            report["invalid"].append(str(out_dir))
            log(str(exc))
            continue
        if marker is None:
            continue
        uri = marker.get("tracking_uri", "?")
        try:
            with claimed(out_dir) as claim:
                if claim is False:
                    report["busy"].append(str(out_dir))
                    continue
                if claim is None:
                    continue  # logged meanwhile by another process
                log_run_marked(Path(out_dir) / "metrics.json", uri, claim.get("parent_run_id"),
                               experiment=claim.get("experiment"))
        except RunResultError as exc:
            report["invalid"].append(str(out_dir))
            log(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - still unreachable: keep the marker for the next try
            report["failed"].append(str(out_dir))
            log(f"{out_dir}: not logged yet ({unreachable(uri, exc)}); the next sync tries again")
            continue
        report["logged"].append(str(out_dir))
        log(f"logged pending run {out_dir} to {uri}")
    return report
