"""What a run and a parent run log, as MLflow entities: per-task metric rows (``step`` = task), settings as
params, the dataset input, parent metrics and verdict tags from a table row."""
from __future__ import annotations

import json
import time
from pathlib import Path

from wscl.method.dynamics import step_metrics
from wscl.method.metrics import SUMMARY_KEYS
from wscl.settings.config import flatten


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
    unlogged = set(range(len(metrics["class_il"]["accuracy_matrix"]))) - set(skip_tasks)
    rows.extend(Metric(name, value, now, step) for name, value, step in tune_metrics(metrics, unlogged, finals=True))
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


TUNE_SUMMARY = ("final_avg_acc", "forgetting")  # the tuning split's figures a run logs [ours]


def tune_metrics(metrics: dict, tasks, finals: bool) -> list[tuple[str, float, int]]:
    """(name, value, step) of the tuning split's figures, when the run has one [ours]: per setting the average
    accuracy over the seen tasks after each of ``tasks`` (``tune/class_il/avg_acc``, step = task) and, with
    ``finals``, the final figures (``tune/class_il/final_avg_acc``, ``tune/class_il/forgetting``, at the last task)."""
    tune = metrics.get("tune")
    if not tune:
        return []
    out = []
    for setting in ("class_il", "task_il"):
        R = tune[setting]["accuracy_matrix"]
        for t in sorted(set(tasks) & set(range(len(R)))):
            seen = [v for v in R[t][: t + 1] if v is not None]
            if len(seen) == t + 1:
                out.append((f"tune/{setting}/avg_acc", sum(seen) / len(seen), t))
        if finals:
            out.extend((f"tune/{setting}/{key}", tune[setting][key], len(R) - 1) for key in TUNE_SUMMARY)
    return out


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
    rows.extend(Metric(name, value, now, step) for name, value, step in tune_metrics(metrics_so_far, {task}, False))
    frozen = metrics_so_far.get("frozen_blocks_per_task", [])
    if task < len(frozen):
        rows.append(Metric("frozen_blocks", frozen[task], now, task))
    # the task's epochs: loss, images/s and peak memory per phase, step = the epoch's index in the run
    rows.extend(Metric(k, v, now, step) for k, v, step in step_metrics(metrics_so_far.get("tasks", []), {task}))
    return rows


def config_params(config: dict) -> list:
    """The run's settings as MLflow params, each value cut only at MLflow's own length limit."""
    from mlflow.entities import Param
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    return [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in sorted(flatten(config).items())]


def dataset_input(ident: dict, context: str = "train"):
    """A dataset identity (provenance.dataset_identity) as an MLflow dataset input: name; digest = the
    content SHA-256 (of generated data too); source (code for generated data). MLflow caps a digest at 36
    characters, so the digest holds the SHA-256's first 36 hex digits and the dataset's profile all of it."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.validation import MAX_DATASET_DIGEST_SIZE
    profile = json.dumps({"sha256": ident["sha256"], "checksums_verified": ident["verified"]})
    dataset = Dataset(name=ident["name"], digest=ident["digest"][:MAX_DATASET_DIGEST_SIZE],
                      source_type="code" if ident["generated"] else "local",
                      source=json.dumps({"uri": ident["source"]}), profile=profile)
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])


def parent_metrics(row: dict) -> dict[str, float]:
    """A table row (aggregate.summary_table) as parent-run metrics: the seed mean of every final metric under
    the children's own key (so parents and children share columns), its std under ``<key>_std``, seeds."""
    out = {"seeds": float(row["seeds"]), "failed_seeds": float(row.get("failed", 0))}
    for setting in ("class_il", "task_il"):
        for key in SUMMARY_KEYS:
            mean, std = row.get(f"{setting}_{key}_mean"), row.get(f"{setting}_{key}_std")
            if mean is not None and mean == mean:
                out[f"{setting}/{key}"] = float(mean)
                out[f"{setting}/{key}_std"] = float(std) if std is not None and std == std else 0.0
    for versus in row.get("comparisons", []):  # this preset's paired comparisons (study/comparisons.py)
        for name in ("difference", "low", "high", "seeds"):
            if versus[name] == versus[name]:
                out[f"compare/{versus['b']}/{name}"] = float(versus[name])
    return out


def parent_tags(row: dict) -> dict[str, str]:
    """Coordinates and reproduction verdicts of a table row (verdicts by the rule of wscl/study/reproduction.py,
    as the tables show them), e.g. ``verdict.class_il.final_avg_acc = reproduced (+0.8 [-1.2, +2.8])``."""
    tags = {"method": str(row["method"]), "preset": str(row["preset"]), "fidelity": str(row["fidelity"]),
            "buffer": str(row["buffer"])}
    if isinstance(row.get("point"), str) and row["point"]:
        tags["point"] = row["point"]  # the sweep point (study/sweeps.py) the parent's seeds trained at
    if row.get("failed_seeds"):  # which seeds failed, and whether the means count them (study/run_failures.py)
        tags["failed_seeds"] = ", ".join(map(str, row["failed_seeds"])) + \
            (" (included in the means)" if row.get("failed_included") else " (left out of the means and verdicts)")
    for metric in ("final_avg_acc", "forgetting"):
        word = row.get(f"verdict_class_il_{metric}")
        if isinstance(word, str) and word:
            low, high = row.get(f"diff_class_il_{metric}_low"), row.get(f"diff_class_il_{metric}_high")
            detail = "" if low is None or low != low else \
                f" ({row[f'diff_class_il_{metric}']:+.2f} [{low:+.2f}, {high:+.2f}])"
            tags[f"verdict.class_il.{metric}"] = word + detail
    for versus in row.get("comparisons", []):  # e.g. compare.no_nrem = helps: +7.70 [+4.00, +11.30], 9 seeds, ...
        interval = "no interval" if versus["low"] != versus["low"] else f"[{versus['low']:+.2f}, {versus['high']:+.2f}]"
        tags[f"compare.{versus['b']}"] = (f"{versus['answer']}: {versus['difference']:+.2f} {interval}, "
                                          f"{versus['seeds']} seeds, {versus['stopped']}")
    return tags
