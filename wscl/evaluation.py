"""Running the network for evaluation, head assignment and freezing scores; the accuracy matrices a run
fills (spec §4) with the random-init baselines of forward transfer."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .augment import Preprocess
from .metrics import summary, to_json_matrix
from .scenario import ImageSource

SETTINGS = ("class_il", "task_il")


def logits_of(net, source: ImageSource, rows: np.ndarray, preprocess: Preprocess, batch_size: int,
              generator: torch.Generator | None = None, train_mode: bool = False) -> torch.Tensor:
    """Logits for ``rows`` of ``source``; augmented (and in training mode) only when asked."""
    net.train(train_mode)
    grad = torch.enable_grad() if train_mode else torch.no_grad()
    out = []
    with grad:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            x = preprocess(source.take(chunk), generator, train=generator is not None)
            out.append(net(x).detach().float())
    net.train(False)
    return torch.cat(out) if out else torch.zeros(0)


def accuracies(logits: torch.Tensor, target_heads: torch.Tensor, task_heads: torch.Tensor) -> tuple[float, float]:
    """Class-IL (argmax over all heads) and Task-IL (argmax over the task's heads) accuracy, in percent."""
    if len(target_heads) == 0:
        return float("nan"), float("nan")
    class_il = (logits.argmax(1) == target_heads).float().mean()
    task_pred = task_heads[logits[:, task_heads].argmax(1)]
    task_il = (task_pred == target_heads).float().mean()
    return 100.0 * float(class_il), 100.0 * float(task_il)


def batch_cross_entropies(net, source: ImageSource, rows: np.ndarray, heads: torch.Tensor, preprocess: Preprocess,
                          batch_size: int, reference: bool,
                          generator: torch.Generator | None) -> tuple[list[float], int]:
    """Mean cross-entropy of every batch of ``rows`` (in order) and the number of images, for the freezing
    score. ``reference`` reproduces the authors' scoring [code, spec §2b.2-3]: training mode (BatchNorm
    uses and updates batch statistics), gradients enabled and augmented images."""
    net.train(reference)
    ctx = contextlib.nullcontext() if reference else torch.no_grad()
    losses = []
    with ctx:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            x = preprocess(source.take(chunk), generator if reference else None, train=reference)
            losses.append(float(F.cross_entropy(net(x).float(), heads[start: start + batch_size]).detach()))
    net.train(False)
    return losses, len(rows)


class TestTasks:
    """Every task's test images and how the network scores on them."""

    def __init__(self, source: ImageSource, rows: list[np.ndarray], labels: np.ndarray,
                 task_classes: Callable[[int], np.ndarray], preprocess: Preprocess, batch_size: int):
        self.source, self.rows, self.labels = source, rows, labels
        self.task_classes, self.preprocess, self.batch_size = task_classes, preprocess, batch_size

    def logits(self, net, task: int) -> torch.Tensor:
        return logits_of(net, self.source, self.rows[task], self.preprocess, self.batch_size)

    def accuracies(self, logits: torch.Tensor, task: int,
                   head_of: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """Class-IL and Task-IL accuracy of ``logits`` on task ``task``, classes mapped to heads by ``head_of``."""
        target = torch.as_tensor(head_of(self.labels[self.rows[task]]), device=logits.device)
        task_heads = torch.as_tensor(head_of(self.task_classes(task)), device=logits.device)
        return accuracies(logits, target, task_heads)


@dataclass
class AccuracyMatrices:
    """Per setting, ``R[i, j]``: accuracy (percent) on task j after training task i, with ``R[i, i+1]``
    measured right after task i+1's head assignment (spec §4); and the random-init baseline b_j."""
    R: dict[str, np.ndarray]
    random_init: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_tasks: int) -> AccuracyMatrices:
        return cls({s: np.full((n_tasks, n_tasks), np.nan) for s in SETTINGS},
                   {s: np.full(n_tasks, np.nan) for s in SETTINGS})

    def record(self, after: int, task: int, accs: tuple[float, float]) -> None:
        for setting, value in zip(SETTINGS, accs):
            self.R[setting][after, task] = value

    def record_baseline(self, task: int, accs: tuple[float, float]) -> None:
        for setting, value in zip(SETTINGS, accs):
            self.random_init[setting][task] = value

    def average(self, setting: str, after: int) -> float:
        """Mean accuracy over the tasks seen after training task ``after``."""
        return float(np.mean(self.R[setting][after, : after + 1]))

    def results(self, reference: bool) -> dict:
        """Per setting: the matrix, the baselines and the summary metrics, as metrics.json reports them."""
        return {setting: {"accuracy_matrix": to_json_matrix(self.R[setting]),
                          "random_init_accuracy": [round(float(v), 6) for v in self.random_init[setting]],
                          **summary(self.R[setting], self.random_init[setting], reference)}
                for setting in SETTINGS}
