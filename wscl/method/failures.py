"""Training failures a user must see [ours]: a non-finite loss, a loss that explodes while staying finite,
and a network that ends a task predicting one head for (nearly) everything.

The loss checks run on the losses the device keeps anyway, once every ``runtime.nan_check_every`` steps
(one device sync per check, none per step). The collapse check reads the predictions of the task-end
evaluation, which the run computes in any case. Every phase that changes weights checks its losses at its
sync points and, when it ends, the weights it produced (wscl/method/step.py, ``check_finite``). A non-finite
loss or non-finite weights always stop the run (exit 5) in the phase that caused them; an
exploded loss and a collapse warn, or stop the run with ``runtime.on_training_failure: stop``. Every
failure is recorded in the task's record, hence in metrics.json (``tasks[t].training_failures`` and the
run's ``training_failures``). The rules and thresholds are in docs/method.md, "Training failures".
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from wscl.core.errors import NonFiniteLossError, TrainingFailedError

# The settings to look at when a phase's loss or weights go wrong: those that size its updates.
PHASE_SETTINGS = {
    "wake": "training.lr",
    "freezing trial": "training.lr",
    "NREM": "training.lr or wscl.nrem.epochs",
    "importance": "training.lr",  # plasticity's measuring pass: it changes no weight, so earlier training did
    "plasticity": "wscl.plasticity.strengthen and wscl.plasticity.strengthen_frac",
    "STM->LTM merge": "training.lr",
    "staged REM": "training.lr or wscl.rem.epochs",
}


@dataclass(frozen=True)
class Where:
    """A training position for messages and records: task and epoch (0-based) of a phase, freezing copy if any."""
    task: int
    epoch: int
    copy: int | None = None
    phase: str = "wake"

    def of_copy(self, copy: int) -> Where:
        return replace(self, copy=copy)

    @property
    def settings(self) -> str:
        """The settings to look at when this phase's losses go wrong."""
        return PHASE_SETTINGS[self.phase]

    def __str__(self) -> str:
        phase = "" if self.phase == "wake" else f"{self.phase} "
        return (f"task {self.task}, {phase}epoch {self.epoch}"
                + ("" if self.copy is None else f" (freezing copy {self.copy})"))


def explosion_limit(n_heads: int, factor: float) -> float:
    """The largest loss that has not exploded: ``factor`` times ln(n_heads), the cross-entropy of a network
    that predicts every head with equal probability (a loss's natural scale, whatever the benchmark)."""
    return factor * math.log(max(n_heads, 2))


def collapsed_head(head_counts: torch.Tensor, n_classes_seen: int, share: float) -> tuple[int, float] | None:
    """(head, its share) when one head takes at least ``share`` of the predictions, else None. With a single
    class seen every prediction may rightly be that class: no collapse then."""
    total = int(head_counts.sum())
    if n_classes_seen < 2 or total == 0:
        return None
    head = int(head_counts.argmax())
    top = int(head_counts[head]) / total
    return (head, top) if top >= share else None


class FailurePolicy:
    """What happens on an exploded loss or a collapse (``runtime.on_training_failure``): ``warn`` prints one
    line and records it, ``stop`` records it and raises ``TrainingFailedError``. ``records`` is the running
    task's list (the task record's ``training_failures``), set by the run at the start of each task."""

    def __init__(self, mode: str, warn: Callable[[str], None] | None = None):
        self.mode = mode
        self.warn = warn or (lambda msg: print(msg, file=sys.stderr))
        self.records: list[dict] = []

    def report(self, record: dict, message: str) -> None:
        self.records.append(record)
        if self.mode == "stop":
            raise TrainingFailedError(f"{message}; runtime.on_training_failure=stop ended the run")
        self.warn(f"warning: {message}")


@dataclass
class LossChecks:
    """How the step losses are checked: every ``every`` steps, non-finite or above ``limit``."""
    every: int
    limit: float
    policy: FailurePolicy

    @classmethod
    def from_config(cls, runtime, n_heads: int, policy: FailurePolicy) -> LossChecks:
        return cls(runtime.nan_check_every, explosion_limit(n_heads, runtime.loss_explosion_factor), policy)

    def check(self, window: torch.Tensor, first_step: int, where: Where, exploded_before: bool) -> bool:
        """Check the losses of steps ``first_step``.. (one device sync); True once an explosion was reported
        (reported once per epoch and learner: ``exploded_before``)."""
        finite, above = torch.isfinite(window), window > self.limit
        any_nonfinite, any_above = torch.stack([(~finite).any(), above.any()]).tolist()
        if any_nonfinite:
            bad = first_step + int((~finite).nonzero()[0, 0])
            raise NonFiniteLossError(f"non-finite loss ({float(window[bad - first_step])}) at {where}, step {bad}; "
                                     f"lower {where.settings} or check the data")
        if not any_above or exploded_before:
            return exploded_before
        step = first_step + int(above.nonzero()[0, 0])
        loss = float(window[step - first_step])
        self.policy.report(
            {"kind": "loss_exploded", "task": where.task, "phase": where.phase, "epoch": where.epoch,
             "freezing_copy": where.copy,
             "step": step, "loss": loss, "limit": round(self.limit, 6)},
            f"training loss exploded ({loss:.4g} > {self.limit:.4g}, runtime.loss_explosion_factor x ln(heads)) "
            f"at {where}, step {step}; lower {where.settings}")
        return True


def check_collapse(policy: FailurePolicy, head_counts: torch.Tensor, n_classes_seen: int, share: float,
                   task: int) -> None:
    """Report a network that ends task ``task`` (after its last wake epoch and its sleep phase) predicting one
    head for at least ``share`` of the seen tasks' test images (``runtime.collapse_share``)."""
    found = collapsed_head(head_counts, n_classes_seen, share)
    if found is None:
        return
    head, top = found
    policy.report(
        {"kind": "collapsed", "task": task, "head": head, "share": round(top, 6), "threshold": share},
        f"the network ends task {task} predicting head {head} for {100 * top:.1f}% of the seen tasks' "
        f"test images (runtime.collapse_share={share}): training collapsed; see docs/method.md, Training failures")
