"""Continual-learning metrics [code] from the accuracy matrix R (docs/method.md §4), and a run's metrics.json.

``R[i][j]`` is the accuracy (percent) on task j after training task i. Entries ``R[i][i+1]`` hold the
accuracy on task i+1 right after its head assignment, before training on it (for forward transfer);
entries further right are NaN.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wscl.core.errors import RunResultError
from wscl.core.provenance import run_provenance
from wscl.core.safe_io import read_result
from wscl.method.dynamics import peak_rss_mb, per_phase
from wscl.settings.config import Config


def final_average_accuracy(R: np.ndarray) -> float:
    T = R.shape[0]
    return float(np.mean(R[T - 1, :T]))


def forgetting(R: np.ndarray, include_pretraining: bool = True) -> float:
    """Mean over j < T-1 of max_k R[k][j] - R[T-1][j].

    ``include_pretraining`` [code, docs/method.md §4]: the maximum runs over every row, so the pre-training entry
    R[j-1][j] counts (Mammoth pads the rows with zeros and takes the column maximum). Otherwise [ours]:
    only rows that trained on task j (k >= j), so an accuracy the task never had after learning it (a
    lucky head assignment) is not counted as forgotten.
    """
    T = R.shape[0]
    if T < 2:
        return 0.0
    drops = [np.nanmax(R[0 if include_pretraining else j:T, j]) - R[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))


def backward_transfer(R: np.ndarray) -> float:
    T = R.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R: np.ndarray, random_init: np.ndarray) -> float:
    """Mean over j >= 1 of R[j-1][j] - b_j, with b_j the random-init network's accuracy on task j."""
    T = R.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([R[j - 1, j] - random_init[j] for j in range(1, T)]))


# Every summary number of a setting (Class-IL or Task-IL), in reporting order.
SUMMARY_KEYS = ("final_avg_acc", "forgetting", "forgetting_incl_pretraining", "forgetting_trained_only", "bwt", "fwt")


def summary(R: np.ndarray, random_init: np.ndarray, reference: bool = True) -> dict[str, float]:
    """The four metrics; ``forgetting`` follows the fidelity ([code] definition under reference), and
    both definitions are reported under their own names."""
    with_pre, trained_only = forgetting(R, include_pretraining=True), forgetting(R, include_pretraining=False)
    return {"final_avg_acc": final_average_accuracy(R), "forgetting": with_pre if reference else trained_only,
            "forgetting_incl_pretraining": with_pre, "forgetting_trained_only": trained_only,
            "bwt": backward_transfer(R), "fwt": forward_transfer(R, random_init)}


def to_json_matrix(R: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 6) for v in row] for row in R]


def run_metrics(cfg: Config, runtime, dataset, state, eval_layout) -> dict:
    """metrics.json of a run (finished or so far): settings (with the evaluation layout), provenance, per
    setting the accuracy matrix with its summary (and under ``tune`` the same on the tuning split, or None),
    the per-task records and the time spent per phase."""
    from wscl.settings.runtime import native_bf16  # torch: imported by training, not by the readers of this module
    reference = cfg.fidelity == "reference"
    out = {"config": cfg.to_dict(), "fidelity": cfg.fidelity, "seed": cfg.seed, "dataset": dataset.name,
           "method": cfg.training.method, "preset": cfg.preset, "device": str(runtime.device),
           "runtime": {**runtime.describe(), **eval_layout.describe()}, **run_provenance(runtime.device),
           "native_bf16": native_bf16(runtime.device),  # what `runtime.bf16: auto` decided from (the hardware)
           "dataset_checksums_verified": bool(dataset.checksums_verified),
           "dataset_sha256": dataset.sha256,  # content digest, of prepared and generated data (data/layout.py)
           "forgetting_definition": "incl_pretraining [code]" if reference else "trained_only [ours]",
           **state.accuracy.results(reference),
           # the same figures on the tuning split (scenario.tune_per_class) [ours]; null without one
           "tune": None if state.tune is None else state.tune.results(reference)}
    block_names = state.learner.net.block_names()
    out["frozen_blocks_per_task"] = [h["frozen_blocks"] for h in state.history]
    out["frozen_block_names_per_task"] = [block_names[: h["frozen_blocks"]] for h in state.history]
    out["tasks"] = [{k: v for k, v in h.items() if k != "wall_seconds"} for h in state.history]
    # exploded losses and collapses of every task (wscl/method/failures.py); empty for a healthy run
    out["training_failures"] = [f for h in state.history for f in h.get("training_failures", [])]
    out["wall_seconds"] = {k: round(v, 4) for k, v in state.timings.items()}
    out["task_wall_seconds"] = [h.get("wall_seconds") for h in state.history]  # per task and phase; None: unknown
    out["wake_steps"] = dict(state.wake_steps)
    wake_s = state.timings["wake"]
    out["train_images_per_second"] = round(state.wake_images / wake_s, 2) if wake_s else None
    # training dynamics (wscl/method/dynamics.py): per epoch in tasks[t].dynamics; per phase and for the run here
    out["phases"] = per_phase([e for h in state.history for e in h.get("dynamics", [])])
    peaks = [p["peak_memory_mb"] for p in out["phases"].values() if p["peak_memory_mb"] is not None]
    out["peak_device_memory_mb"] = max(peaks) if peaks else None  # on a GPU; None on the CPU
    out["peak_rss_mb"] = peak_rss_mb()  # this process's, so a resumed run's covers its last part only
    return out


# What aggregation, tracking and the archive read from every finished run's metrics.json.
REQUIRED_KEYS = ("config", "fidelity", "seed", "dataset", "method", "preset", "device", "git_commit", "class_il",
                 "task_il", "frozen_blocks_per_task", "wall_seconds")
REQUIRED_PER_SETTING = ("accuracy_matrix", *SUMMARY_KEYS)  # under class_il and task_il


# A run that stopped in training inside a study (`wscl train --record-failure`): status failed and the message,
# no figures (wscl/study/run_failures.py).
FAILED_RUN_KEYS = ("status", "failure", "config", "fidelity", "seed", "dataset", "method", "preset", "device",
                   "git_commit")


def failed_run_metrics(cfg: Config, message: str, provenance: dict) -> dict:
    """metrics.json of a run that stopped in training: its settings, provenance and why, no figures."""
    return {"status": "failed", "failure": message, "config": cfg.to_dict(), "fidelity": cfg.fidelity, "seed": cfg.seed,
            "dataset": cfg.dataset.name, "method": cfg.training.method, "preset": cfg.preset,
            **provenance, "training_failures": [], "tasks": [], "frozen_blocks_per_task": [], "wall_seconds": {}}


def missing_keys(metrics) -> list[str]:
    """The required keys a parsed metrics.json lacks, nested ones dotted (``class_il.forgetting``)."""
    if not isinstance(metrics, dict):
        return ["all"]
    if metrics.get("status") == "failed":
        return [k for k in FAILED_RUN_KEYS if k not in metrics]
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    for setting in ("class_il", "task_il"):
        if isinstance(metrics.get(setting), dict):
            missing += [f"{setting}.{k}" for k in REQUIRED_PER_SETTING if k not in metrics[setting]]
    if isinstance(metrics.get("config"), dict) and "runtime" not in metrics["config"]:
        missing.append("config.runtime")
    return missing


def read_metrics(path: str | Path) -> tuple[dict, bytes]:
    """A finished run's metrics.json, parsed and as written (the bytes are what tracking logs and tags).
    Missing, unreadable, changed since the run sealed it or not a run's metrics, it raises
    ``RunResultError`` naming the file and how to write it again."""
    path = Path(path)
    fix = (f"a run writes it whole when it finishes, so it was changed or lost since: delete it and rerun the "
           f"workflow, or `wscl train` with the run's settings and --out {path.parent} (either resumes from the "
           "run's checkpoint.pt when it is there, and writes the file again)")
    content = read_result(path, fix)
    try:
        metrics = json.loads(content)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise RunResultError(f"{path} is not valid JSON ({exc}): {fix}") from None
    missing = missing_keys(metrics)
    if not missing:
        return metrics, content
    raise RunResultError(f"{path} does not hold a run's metrics (missing: {', '.join(missing)}): {fix}")
