"""Wake phase [paper][code]: training epochs on the current task's stream.

Each epoch is planned on the host first (batch order, memory slots, replay draws) and then executed
on the device without waiting for it, except for the periodic non-finite-loss check.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .errors import NonFiniteLossError
from .learners import Learner, Step
from .scenario import Pool


@dataclass
class EpochPlan:
    steps: list[Step]
    host_rows: list[np.ndarray]
    num_seen_after: int

    @property
    def replay_steps(self) -> int:
        """Steps that train on a replay minibatch too."""
        return sum(bool(step.replay) for step in self.steps)


def plan_epoch(learner: Learner, pool: Pool, batch_size: int, replay_batch_size: int,
               rng: np.random.Generator) -> EpochPlan:
    memory, device = learner.memory, pool.device
    order = rng.permutation(len(pool))
    num_seen = memory.num_seen
    host_rows, slots, replays = [], [], []
    for start in range(0, len(order), batch_size):
        rows = order[start: start + batch_size]
        n_stored = min(num_seen, memory.capacity)
        draws = learner.replay_draws if learner.replays_now(n_stored) else 0
        replays.append([memory.replay_indices(replay_batch_size, num_seen, rng) for _ in range(draws)])
        step_slots, num_seen = memory.reservoir_slots(rows < pool.n_real, num_seen, rng)
        host_rows.append(rows)
        slots.append(step_slots)
    # One transfer per epoch; steps hold views into these tensors.
    order_dev = torch.as_tensor(order, device=device)
    slots_dev = torch.as_tensor(np.concatenate(slots) if slots else np.zeros(0, np.int64), device=device)
    flat_replay = [r for step in replays for r in step]
    replay_dev = torch.as_tensor(np.concatenate(flat_replay) if flat_replay else np.zeros(0, np.int64),
                                 device=device)
    steps, pos, rpos = [], 0, 0
    for i, (rows, step_replays) in enumerate(zip(host_rows, replays)):
        views = []
        for r in step_replays:
            views.append(replay_dev[rpos: rpos + len(r)])
            rpos += len(r)
        steps.append(Step(i, order_dev[pos: pos + len(rows)], slots_dev[pos: pos + len(rows)], views))
        pos += len(rows)
    return EpochPlan(steps, host_rows, num_seen)


class LossMonitor:
    """Keeps step losses on the device and checks them every ``every`` steps (one sync per check)."""

    def __init__(self, n_steps: int, every: int, device, where: str, progress=None):
        self.losses = torch.zeros(max(n_steps, 1), device=device)
        self.every, self.where, self.progress = every, where, progress
        self.checked = 0
        self.t0 = time.perf_counter()
        self.images = 0

    def record(self, step: int, loss: torch.Tensor, n_images: int) -> None:
        self.losses[step] = loss
        self.images += n_images
        if (step + 1) % self.every == 0:
            self.check(step + 1)

    def check(self, upto: int) -> None:
        window = self.losses[self.checked: upto]
        if len(window) == 0:
            return
        finite = torch.isfinite(window)
        if not bool(finite.all()):
            bad = self.checked + int((~finite).nonzero()[0, 0])
            raise NonFiniteLossError(f"non-finite loss ({float(self.losses[bad])}) at {self.where}, step {bad}; "
                                     "lower training.lr or check the data")
        if self.progress is not None:
            rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
            self.progress.set_postfix(loss=f"{float(window.mean()):.3f}", img_s=f"{rate:.0f}", refresh=False)
            self.progress.update(upto - self.checked)
        self.checked = upto


def run_epoch(learner: Learner, pool: Pool, plan: EpochPlan, generator: torch.Generator, nan_check_every: int,
              where: str, progress=None, start: int = 0, stop=None) -> tuple[int, int]:
    """Execute a planned epoch from step ``start``; returns (stream images trained on, steps done).

    ``stop()`` is asked after every step; when true, the epoch pauses there (steps done < the plan's): the
    memory's stream count stays at the epoch's start, so that the same plan, made again from the same host
    generator state, continues it."""
    monitor = LossMonitor(len(plan.steps), nan_check_every, pool.device, where, progress)
    monitor.checked = start
    n_images, done = 0, len(plan.steps)
    batches = pool.batches(plan.host_rows[start:], [step.batch for step in plan.steps[start:]])
    for step, rows, (raw, labels, sample_ids) in zip(plan.steps[start:], plan.host_rows[start:], batches):
        loss = learner.observe(raw, labels, sample_ids, step, generator)
        monitor.record(step.index, loss, len(rows))
        n_images += len(rows)
        if stop is not None and step.index + 1 < len(plan.steps) and stop():
            done = step.index + 1
            break
    batches.close()  # a paused epoch: stop reading ahead
    monitor.check(done)
    if done == len(plan.steps):
        learner.memory.num_seen = plan.num_seen_after
    return n_images, done


def real_rows_in_order(plan: EpochPlan, n_real: int) -> np.ndarray:
    """The real (non-dream) pool rows of an epoch in stream order, for the short-term memory."""
    rows = np.concatenate(plan.host_rows) if plan.host_rows else np.zeros(0, np.int64)
    return rows[rows < n_real]
