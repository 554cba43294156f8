"""NREM sleep [paper]: consolidation by replaying the short-term and long-term memories.

[ours] ``epochs`` passes over the STM; every batch is drawn ``stm_fraction`` from STM and the rest from
the LTM, with cross-entropy over the heads of all tasks seen so far. The same batches measure the
weight importance that synaptic plasticity uses; with NREM training off, one pass measures it
without updating the weights. Afterwards the STM is merged into the LTM, class-balanced.
``stm_size`` and ``sleep`` hold the policy: when the STM exists and what one night of NREM does
(the whole sleep after a task, NREM then staged REM, is `sleep.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from wscl.core.errors import NonFiniteLossError
from wscl.method.dynamics import EpochClock, PhaseEpoch
from wscl.method.failures import PHASE_SETTINGS, Where
from wscl.method.feed import Pool
from wscl.method.learners import Learner
from wscl.method.memory import ShortTermMemory
from wscl.method.night import Night
from wscl.method.plasticity import Importance, apply_plasticity
from wscl.method.step import train_step


def stm_size(wscl: dict) -> int:
    """[ours] The STM exists only for what reads it: NREM replay or plasticity's importance."""
    return wscl.stm.size if (wscl.nrem.enabled or wscl.plasticity.enabled) else 0


@dataclass(frozen=True)
class Passes:
    """How NREM replays: ``epochs`` passes over the STM in batches of ``batch_size``, ``stm_fraction`` of each
    from the STM, updating the weights or (``update`` False) only measuring importance."""
    epochs: int
    batch_size: int
    stm_fraction: float
    update: bool = True


def sleep(night: Night, stm: ShortTermMemory, seen_heads: torch.Tensor, wscl: dict, batch_size: int) -> dict:
    """One night of NREM after task ``night.task``: replay (measuring importance), plasticity, then the
    STM->LTM merge, each checked for non-finite weights when it ends. Returns what the task's record notes."""
    nrem, plast, task = wscl.nrem, wscl.plasticity, night.task
    info = {}
    importance = Importance(night.learner.net) if plast.enabled else None
    if nrem.enabled or plast.enabled:
        epochs = nrem.epochs if nrem.enabled else 1  # plasticity alone: one measuring pass
        fraction = 1.0 / (task + 1) if nrem.stm_fraction == "auto" else nrem.stm_fraction
        replay_stm_ltm(night, stm, seen_heads, Passes(epochs, batch_size, fraction, nrem.enabled), importance)
        if nrem.enabled:
            night.check("NREM")
    if importance is not None and len(stm):
        report = apply_plasticity(importance, plast.strengthen_frac, plast.strengthen, plast.weaken_frac,
                                  plast.weaken)
        info["plasticity_weights_scaled"] = sum(r["strengthened"] + r["weakened"] for r in report.values())
        night.check("plasticity")
    merge_stm_into_ltm(night.learner, night.pool, stm, night.rng)
    check_stored_logits(night.learner, task)
    return info


def check_stored_logits(learner: Learner, task: int) -> None:
    """The merge keeps (DER++) the consolidated network's logits of the STM samples: they must be finite."""
    logits = learner.memory.logits
    if logits is not None and not bool(torch.isfinite(logits).all()):
        raise NonFiniteLossError(f"non-finite stored logits after the STM->LTM merge of task {task}; "
                                 f"lower {PHASE_SETTINGS['STM->LTM merge']}")


def seen_head_logits(logits: torch.Tensor, seen_heads: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(~seen_heads, torch.finfo(logits.dtype).min)


def seen_heads_loss(learner: Learner, x: torch.Tensor, labels: torch.Tensor, seen_heads: torch.Tensor) -> torch.Tensor:
    """NREM's loss: cross-entropy over the heads of every task seen so far."""
    return F.cross_entropy(seen_head_logits(learner.forward(x), seen_heads), labels)


def replay_stm_ltm(night: Night, stm: ShortTermMemory, seen_heads: torch.Tensor, passes: Passes,
                   importance: Importance | None) -> int:
    """Returns the number of images replayed; each epoch's entry goes to ``night.dynamics`` (phase ``nrem``, or
    ``importance`` for a measuring pass that does not update the weights). Each epoch's losses are checked
    when it ends (one device sync, where the epoch's mean loss is read anyway)."""
    learner, pool, rng, generator, task = night.learner, night.pool, night.rng, night.generator, night.task
    epochs, batch_size, stm_fraction, update = passes.epochs, passes.batch_size, passes.stm_fraction, passes.update
    if len(stm) == 0 or epochs == 0:
        return 0
    n_ltm_stored = learner.memory.n_stored
    n_stm = batch_size if n_ltm_stored == 0 else max(1, round(batch_size * stm_fraction))
    n_ltm = batch_size - n_stm if n_ltm_stored else 0
    steps = math.ceil(len(stm) / n_stm)
    learner.net.train()
    n_images = 0
    for epoch in range(epochs):
        clock, losses, epoch_images = EpochClock(pool.device), torch.zeros(steps, device=pool.device), 0
        # Host draws for the whole epoch, one transfer each: the steps only slice.
        order = rng.permutation(stm.indices)
        order_dev = torch.as_tensor(order, device=pool.device)
        ltm_dev = torch.as_tensor(np.stack([learner.memory.replay_indices(n_ltm, learner.memory.num_seen, rng)
                                            for _ in range(steps)]) if n_ltm else np.zeros((steps, 0), np.int64),
                                  device=pool.device)
        for s in range(steps):
            window = slice(s * n_stm, (s + 1) * n_stm)
            raw, labels, _ = pool.gather(order[window], order_dev[window])
            if n_ltm:
                raw = torch.cat([raw, learner.memory.x[ltm_dev[s]]])
                labels = torch.cat([labels, learner.memory.y[ltm_dev[s]]])
            x = learner.preprocess(raw, generator)
            losses[s], _ = train_step(learner, partial(seen_heads_loss, learner, x, labels, seen_heads),
                                      update=update, after_backward=importance.accumulate if importance else None)
            epoch_images += len(labels)
        n_images += epoch_images
        night.checks.check(losses, 0, Where(task, epoch, phase="NREM" if update else "importance"), False)
        if night.dynamics is not None:
            which = PhaseEpoch("nrem" if update else "importance", task, epoch)
            night.dynamics.append(clock.entry(which, losses, epoch_images))
    learner.opt.zero_grad(set_to_none=True)
    return n_images


def merge_stm_into_ltm(learner: Learner, pool: Pool, stm: ShortTermMemory, rng: np.random.Generator) -> None:
    """[ours] LTM := a class-balanced selection (where possible) from LTM plus the STM's new samples."""
    memory = learner.memory
    if memory.capacity == 0 or len(stm) == 0:
        stm.clear()
        return
    stored = memory.stored()
    stm_rows = torch.as_tensor(stm.indices, device=pool.device)
    stm_x, stm_y, stm_ids = pool.gather(stm.indices, stm_rows)
    x = torch.cat([stored["x"], stm_x])
    y = torch.cat([stored["y"], stm_y])
    ids = torch.cat([stored["sample_id"], stm_ids])
    logits = None
    if memory.logits is not None:  # DER++: every kept sample keeps the logits stored with it
        logits = torch.cat([memory.logits[: memory.n_stored], stm_logits(learner, stm_x)])
    ids_host, y_host = ids.cpu().numpy(), y.cpu().numpy()
    _, first = np.unique(ids_host, return_index=True)  # drop samples the LTM already holds
    unique_rows = np.sort(first)
    keep = balanced_selection(y_host[unique_rows], memory.capacity, rng)
    rows = torch.as_tensor(unique_rows[keep], device=pool.device)
    memory.replace_contents(x[rows], y[rows], ids[rows], None if logits is None else logits[rows])
    stm.clear()


@torch.no_grad()
def stm_logits(learner: Learner, raw: torch.Tensor) -> torch.Tensor:
    """[ours] Logits DER++ stores for STM samples entering the LTM: the consolidated network's, on the
    unaugmented images (the STM keeps no logits of its own)."""
    learner.net.eval()
    out = learner.forward(learner.preprocess(raw, None, train=False))
    learner.net.train()
    return out


def balanced_selection(labels: np.ndarray, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of at most ``capacity`` labels, taking classes round-robin in random order within a class."""
    by_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    chosen, depth = [], 0
    while len(chosen) < min(capacity, len(labels)):
        for members in by_class:
            if depth < len(members) and len(chosen) < capacity:
                chosen.append(members[depth])
        depth += 1
    return np.sort(np.asarray(chosen, dtype=np.int64))
