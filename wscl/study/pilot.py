"""The pilot of a study whose seeds are chosen by precision [ours] (``wscl pilot``, the workflow's checkpoint).

It reads the pilot seeds' Class-IL final average accuracy and records, per comparison, the standard deviation of
the paired differences a - b over those seeds. That number alone fixes each comparison's total seed count
(Stein's procedure, study/comparisons.py), so a tighter half-width or a larger ``max`` trains only the seeds that
are missing, and the pilot itself is never redone for them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wscl.core.safe_io import atomic_write_text
from wscl.method.metrics import read_metrics
from wscl.study.run_failures import failure_of
from wscl.study.studies import Study

METRIC = "class_il_final_avg_acc"  # what every comparison compares (the paper's headline figure)


def pilot_result(study: Study, value_of=None) -> dict:
    """``{"pilot": seeds, "pilot_sd": {"<group a> - <group b>": sd}}``; ``value_of(run_dir)`` gives a run's
    Class-IL final accuracy (default: read from its metrics.json)."""
    value_of = value_of or healthy_accuracy(study.config.get("include_failed_runs", False))
    values = {}
    for key in study.pilot_runs():
        values.setdefault(key.group, {})[key.seed] = value_of(study.run_dir(key))
    sds = {}
    for _, a, b in study.comparisons():
        # a failed seed leaves the comparison, as in the tables; fewer than 2 left: no estimate (inf -> max seeds)
        diffs = [values[a][s] - values[b][s] for s in study.seeds
                 if values[a][s] is not None and values[b][s] is not None]
        sds[f"{a} - {b}"] = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("inf")
    return {"metric": METRIC, "pilot": len(study.seeds), "pilot_sd": sds}


def healthy_accuracy(include_failed: bool):
    """A run's Class-IL final accuracy from its metrics.json; None for a failed run (study/run_failures.py) unless
    the study counts failed runs."""
    def value_of(run_dir) -> float | None:
        metrics = read_metrics(Path(run_dir) / "metrics.json")[0]
        if failure_of(metrics) and not include_failed:
            return None
        return float(metrics["class_il"]["final_avg_acc"])
    return value_of


def write_pilot(result: dict, out: str | Path) -> None:
    atomic_write_text(Path(out), json.dumps(result, indent=2, sort_keys=True) + "\n", sealed=True)  # planning reads it
