"""Running the network for evaluation, head assignment and freezing scores."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from .augment import Preprocess
from .scenario import ImageSource


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
                          batch_size: int, reference: bool, generator: torch.Generator | None) -> tuple[list[float], int]:
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
