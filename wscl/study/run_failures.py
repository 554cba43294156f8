"""What a failed run is, for a study's numbers [ours] (docs/method.md, Training failures).

A run failed when it stopped in training (its metrics.json records ``status: failed`` and the message: a
non-finite loss, or with ``runtime.on_training_failure: stop`` an exploded loss or a collapse), when it finished
but recorded a training failure (an exploded loss or a collapsed network, ``training_failures``), or when a
final figure is not finite. Aggregation leaves failed seeds out of every mean and verdict unless the study sets
``include_failed_runs: true``; every table row names the failed seeds either way, and selection skips a sweep
point with a failed seed.
"""
from __future__ import annotations

import math

FAILED = "failed"  # metrics.json's status of a run that stopped in training (wscl train --record-failure)


def failure_of(metrics: dict) -> str:
    """Why the run failed, in a few words, or "" for a healthy run."""
    if metrics.get("status") == FAILED:
        return f"stopped: {metrics.get('failure') or 'training failed'}"
    records = metrics.get("training_failures") or []
    if records:
        kinds = sorted({r.get("kind", "failure") for r in records})
        return f"{', '.join(kinds)} (task {min(r.get('task', 0) for r in records)})"
    finals = [metrics.get(s, {}).get("final_avg_acc") for s in ("class_il", "task_il")]
    if any(not isinstance(v, (int, float)) or not math.isfinite(v) for v in finals):
        return "non-finite final figures"
    return ""


def failed_seeds_text(seeds: list[int]) -> str:
    """A table cell: ``0`` or ``1 (seed 2)`` / ``2 (seeds 0, 2)``."""
    if not seeds:
        return "0"
    return f"{len(seeds)} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, sorted(seeds)))})"
