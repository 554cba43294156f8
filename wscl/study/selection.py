"""Choosing a sweep's point on the tuning split [ours], never on the test set.

Per benchmark x buffer x method x preset x fidelity that a sweep expands, the selected point is the one with
the best mean Class-IL final average accuracy on the tuning split (``scenario.tune_per_class`` images per
class held out of training; docs/method.md, "Tuning split") over seeds; ties go to the point listed first.
A point with a failed seed (study/run_failures.py: stopped in training, an exploded loss, a collapse) is
skipped; selection.json says why (``skipped``). Only the runs' ``tune`` figures are read here: the test set
plays no part in the choice (a test permutes the test labels and gets the same selection). The study's tables
then report the selected point's test figures (study/aggregate.py), and presets of a grid entry with
``tuned_from`` train at it.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from wscl.core.errors import RunResultError
from wscl.core.safe_io import atomic_write_text, read_json_result
from wscl.method.metrics import read_metrics
from wscl.study.run_failures import failure_of
from wscl.study.studies import Study
from wscl.study.sweeps import TUNED

CRITERION = ("mean over seeds of the Class-IL final average accuracy on the tuning split "
             "(scenario.tune_per_class); the test set played no part in choosing")
SELECT_AGAIN = "delete it and rerun the workflow (the select rule writes it again from the runs' metrics.json)"


def tuning_figures(metrics: dict) -> dict[str, float]:
    """What selection reads of a run: its tuning-split figures, nothing of its test figures."""
    tune = metrics.get("tune") or {}
    return {f"{setting}_{metric}": tune[setting][metric] for setting in ("class_il", "task_il")
            for metric in ("final_avg_acc", "forgetting") if setting in tune}


def _figures_and_failure(run_dir) -> dict:
    metrics = read_metrics(Path(run_dir) / "metrics.json")[0]
    return {**tuning_figures(metrics), "failure": failure_of(metrics)}


def _summarize(point: dict, runs: list[dict]) -> None:
    """A point's seed count and the mean and std of each tuning figure, or why it is skipped."""
    point["seeds"] = len(runs) + len(point["failed"])
    if point["failed"]:
        point["skipped"] = "failed: " + "; ".join(point["failed"])
        return
    for name in runs[0]:
        values = [r[name] for r in runs]
        point[f"tune_{name}_mean"] = statistics.fmean(values)
        point[f"tune_{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0


def select(study: Study, figures_of=None) -> dict:
    """The selection of every swept group; ``figures_of(run_dir)`` gives a run's tuning figures and, under
    ``failure``, why it failed ("" or absent: healthy; default: read from its metrics.json)."""
    figures_of = figures_of or _figures_and_failure
    groups: dict[str, dict] = {}
    for key in study.runs():
        if not key.point or key.point == TUNED:
            continue
        group = groups.setdefault(replace(key, point="").group, {"points": {}})
        point = group["points"].setdefault(key.point, {"settings": study.point_settings(key.point), "runs": [],
                                                        "failed": []})
        figures = dict(figures_of(study.run_dir(key)))
        failure = figures.pop("failure", "")
        if failure:
            point["failed"].append(f"seed {key.seed}: {failure}")
            continue
        if "class_il_final_avg_acc" not in figures:
            raise RunResultError(f"{study.run_dir(key)}/metrics.json has no tuning-split figures: a sweep chooses on "
                                 "the tuning split, so set trainer.scenario.tune_per_class > 0 for the swept runs")
        point["runs"].append(figures)
    for name, group in groups.items():
        for point in group["points"].values():
            _summarize(point, point.pop("runs"))
        healthy = [p for p, point in group["points"].items() if "skipped" not in point]
        if not healthy:
            raise RunResultError(f"every sweep point of {name} has a failed seed ("
                                 + "; ".join(p["skipped"] for p in group["points"].values())
                                 + "): nothing to select; lower training.lr or change the swept values")
        best = max(healthy, key=lambda p: group["points"][p]["tune_class_il_final_avg_acc_mean"])
        group["selected"], group["settings"] = best, group["points"][best]["settings"]
    return {"criterion": CRITERION, "groups": groups}


def write_selection(selection: dict, out: str | Path) -> None:
    atomic_write_text(Path(out), json.dumps(selection, indent=2) + "\n", sealed=True)  # trainings read it back


def read_selection(path: str | Path) -> dict:
    return read_json_result(path, SELECT_AGAIN)
