"""REM sleep / dreaming [paper][code]: learning from unseen but realistic images.

Every free head is bound to one class of an auxiliary ("dream") dataset whose classes are disjoint from
the primary ones. ``interleaved`` [code] mixes all dream images of the free heads into every wake
epoch; ``staged`` [ours, the paper's separate sleep] trains ``epochs`` on dream images alone after NREM
(loss over the free heads) plus replay from the LTM. ``interleaved_part`` and ``staged_pool`` hold the
schedule: which dreams go where.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from wscl.data.canonical import CanonicalDataset
from wscl.method.dynamics import EpochClock, PhaseEpoch
from wscl.method.failures import Where
from wscl.method.feed import ImageSource, Pool
from wscl.method.heads import HeadBook
from wscl.method.learners import Learner
from wscl.method.night import Night
from wscl.method.scenario import subsample_per_class
from wscl.method.step import train_step
from wscl.settings.config import ConfigError


@dataclass
class DreamSet:
    """The dream images available to a run: the auxiliary set, noise, or nothing."""
    source: ImageSource | None
    labels: np.ndarray
    n_classes: int

    def rows_of_heads(self, book: HeadBook) -> tuple[np.ndarray, np.ndarray]:
        """Dream rows and the head each is bound to, for every free head that dreams."""
        rows, heads = [], []
        for head, dream_class in book.dreaming_heads():
            members = np.flatnonzero(self.labels == dream_class)
            rows.append(members)
            heads.append(np.full(len(members), head, dtype=np.int64))
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(rows), np.concatenate(heads)


def dream_set(dataset: CanonicalDataset, rem: dict, n_heads: int, device: torch.device,
              rng: np.random.Generator) -> DreamSet:
    """The run's dreams by ``wscl.rem.source``: the dataset's auxiliary set, noise images, or none."""
    if rem.source == "aux":
        if len(dataset.dream_classes) == 0:
            raise ConfigError(f"wscl.rem.source=aux but dataset {dataset.name!r} has no dream set; "
                              "use source noise or none")
        labels = np.asarray(dataset.dream_y)
        keep = subsample_per_class(labels, np.arange(len(dataset.dream_classes)), rem.dream_per_class, rng)
        labels = np.where(np.isin(np.arange(len(labels)), keep), labels, -1)  # -1: never dreamt of
        return DreamSet(ImageSource(dataset.dream_x, device, dataset.memory_mapped), labels,
                        len(dataset.dream_classes))
    if rem.source == "noise":
        images, labels = noise_images(n_heads, rem.noise_per_class, dataset.image_shape, rng)
        return DreamSet(ImageSource(images, device, False), labels, n_heads)
    return DreamSet(None, np.zeros(0, np.int64), 0)


def noise_images(n_classes: int, per_class: int, image_shape,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """[ours] Uniform noise images, one block per dream class (the `rem_noise` ablation)."""
    images = rng.integers(0, 256, size=(n_classes * per_class, *image_shape), dtype=np.uint8)
    return images, np.repeat(np.arange(n_classes), per_class).astype(np.int64)


def dream_part(dreams: DreamSet, book: HeadBook):
    """A Pool part (source, rows, heads, sample ids) with the dreams of the currently free heads."""
    rows, heads = dreams.rows_of_heads(book)
    if len(rows) == 0:
        return None
    return dreams.source, rows, heads, np.full(len(rows), -1, dtype=np.int64)


def interleaved_part(dreams: DreamSet, book: HeadBook, rem: dict):
    """[code] The dreams mixed into this task's wake epochs (None: none under this schedule)."""
    if rem.source == "none" or rem.schedule != "interleaved":
        return None
    return dream_part(dreams, book)


def staged_pool(dreams: DreamSet, book: HeadBook, rem: dict, device: torch.device) -> Pool | None:
    """[ours] The dreams of the separate REM stage after NREM (None: no stage this task)."""
    if rem.source == "none" or rem.schedule != "staged" or not rem.epochs:
        return None
    part = dream_part(dreams, book)
    return None if part is None else Pool([part], device)


def run_staged_rem(night: Night, dream_pool: Pool, free_heads: torch.Tensor, epochs: int, batch_size: int,
                   replay_batch_size: int) -> int:
    """Returns the number of dream images trained on; each epoch's entry goes to ``night.dynamics``. Each
    epoch's losses are checked when it ends, and the weights when the stage ends."""
    learner, rng, task = night.learner, night.rng, night.task
    learner.net.train()
    n_images = 0
    replays = not learner.memory.is_empty()
    for epoch in range(epochs):
        clock, epoch_images = EpochClock(dream_pool.device), 0
        # Host draws for the whole epoch, one transfer each: the steps only slice.
        order = rng.permutation(len(dream_pool))
        order_dev = torch.as_tensor(order, device=dream_pool.device)
        steps = math.ceil(len(order) / batch_size)
        losses = torch.zeros(steps, device=dream_pool.device)
        if replays:
            replay_dev = torch.as_tensor(np.stack([
                learner.memory.replay_indices(replay_batch_size, learner.memory.num_seen, rng) for _ in range(steps)]),
                device=dream_pool.device)
        for s in range(steps):
            window = slice(s * batch_size, (s + 1) * batch_size)
            raw, labels, _ = dream_pool.gather(order[window], order_dev[window])
            x = learner.preprocess(raw, night.generator)
            replay = learner.replay_batch(replay_dev[s], night.generator) if replays else None
            losses[s], _ = train_step(learner, partial(dream_loss, learner, x, labels, free_heads, replay))
            epoch_images += len(raw)
        n_images += epoch_images
        night.checks.check(losses, 0, Where(task, epoch, phase="staged REM"), False)
        if night.dynamics is not None:
            night.dynamics.append(clock.entry(PhaseEpoch("rem", task, epoch), losses, epoch_images))
    if epochs:
        night.check("staged REM")
    return n_images


def dream_loss(learner: Learner, x: torch.Tensor, labels: torch.Tensor, free_heads: torch.Tensor,
               replay: tuple | None) -> torch.Tensor:
    """Staged REM's loss: cross-entropy of the dreams over the free heads, plus replay from the LTM if any."""
    logits = learner.forward(x)
    loss = F.cross_entropy(logits.masked_fill(~free_heads, torch.finfo(logits.dtype).min), labels)
    if replay is not None:
        buf_x, buf_y, _ = replay
        loss = loss + F.cross_entropy(learner.forward(buf_x), buf_y)
    return loss
