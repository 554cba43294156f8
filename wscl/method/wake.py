"""Wake phase [paper][code]: training epochs on the current task's stream.

Each epoch is planned on the host first (batch order, memory slots, replay draws) and then executed
on the device without waiting for it, except for the periodic loss check (wscl/method/failures.py). ``wake_phase``
runs a task's epochs (the freezing trial in place of epoch 0) and can pause inside an epoch: ``MidTask``
holds where the task stands, so that a checkpoint written there resumes exactly.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from wscl.method.dynamics import EpochClock, PhaseEpoch
from wscl.method.failures import LossChecks, Where
from wscl.method.feed import Pool
from wscl.method.learners import Learner, Step
from wscl.method.task import TaskContext
from wscl.settings.runtime import timed


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
    """Keeps step losses on the device and checks them every ``checks.every`` steps (one sync per check)."""

    def __init__(self, losses: torch.Tensor, checks: LossChecks, where: Where, progress=None, start: int = 0):
        self.losses = losses  # one per planned step (``step_losses``)
        self.checks, self.where, self.progress = checks, where, progress
        self.checked = start  # steps before ``start`` ran in an earlier process (a resumed epoch)
        self.exploded = False
        self.t0 = time.perf_counter()
        self.images = 0

    def record(self, step: int, loss: torch.Tensor, n_images: int) -> None:
        self.losses[step] = loss
        self.images += n_images
        if (step + 1) % self.checks.every == 0:
            self.check(step + 1)

    def check(self, upto: int) -> None:
        window = self.losses[self.checked: upto]
        if len(window) == 0:
            return
        self.exploded = self.checks.check(window, self.checked, self.where, self.exploded)
        if self.progress is not None:
            rate = self.images / max(time.perf_counter() - self.t0, 1e-9)
            self.progress.set_postfix(loss=f"{float(window.mean()):.3f}", img_s=f"{rate:.0f}", refresh=False)
            self.progress.update(upto - self.checked)
        self.checked = upto


def step_losses(n_steps: int, device, earlier: torch.Tensor | None = None) -> torch.Tensor:
    """Room for an epoch's step losses on the device, holding ``earlier``'s (the steps run before a pause)."""
    losses = torch.zeros(max(n_steps, 1), device=device)
    if earlier is not None:
        losses[: len(earlier)] = earlier.to(device)
    return losses


@dataclass
class Trainee:
    """One learner of a lockstep epoch, with its own generator and loss monitor."""
    learner: Learner
    generator: torch.Generator
    monitor: LossMonitor


def run_epoch(trainee: Trainee, pool: Pool, plan: EpochPlan, start: int = 0, stop=None) -> tuple[int, int]:
    """Execute a planned epoch from step ``start``; returns (stream images trained on, steps done).

    ``stop()`` is asked after every step; when true, the epoch pauses there (steps done < the plan's): the
    memory's stream count stays at the epoch's start, so that the same plan, made again from the same host
    generator state, continues it."""
    return run_in_lockstep([trainee], pool, plan, start, stop)


def run_in_lockstep(trainees: list[Trainee], pool: Pool, plan: EpochPlan, start: int = 0, stop=None,
                    before_step: Callable[[], None] | None = None) -> tuple[int, int]:
    """The planned steps from ``start``, each batch read once and observed by every trainee in turn, each
    with its own generator and loss monitor (one trainee: a wake epoch; several: the freezing trial's
    copies). ``before_step()`` runs before each step's first learner. Returns (stream images, steps done);
    ``stop`` as in ``run_epoch``."""
    n_images, done = 0, len(plan.steps)
    batches = pool.batches(plan.host_rows[start:], [step.batch for step in plan.steps[start:]])
    for step, rows, (raw, labels, sample_ids) in zip(plan.steps[start:], plan.host_rows[start:], batches):
        if before_step is not None:
            before_step()
        for t in trainees:
            t.monitor.record(step.index, t.learner.observe(raw, labels, sample_ids, step, t.generator), len(rows))
        n_images += len(rows)
        if stop is not None and step.index + 1 < len(plan.steps) and stop():
            done = step.index + 1
            break
    batches.close()  # a paused epoch: stop reading ahead
    for t in trainees:
        t.monitor.check(done)
        if done == len(plan.steps):
            t.learner.memory.num_seen = plan.num_seen_after
    return n_images, done


def real_rows_in_order(plan: EpochPlan, n_real: int) -> np.ndarray:
    """The real (non-dream) pool rows of an epoch in stream order, for the short-term memory."""
    rows = np.concatenate(plan.host_rows) if plan.host_rows else np.zeros(0, np.int64)
    return rows[rows < n_real]


def wake_phase(ctx: TaskContext, training, trial: Callable | None) -> None:
    """The wake epochs of task ``ctx.task`` from where ``ctx.mid`` stands (``training``: the configuration's
    section); the pool's size and the freezing scores go into the task's record. ``trial(pool, plan, progress)``,
    when given, takes the place of epoch 0 and returns those scores. A stop request pauses a wake epoch after its
    current step (the trial, not interruptible, runs to its end); ``ctx.pause_point(mid, paused)`` is called at
    the pause and at the end of every epoch, and checkpoints or stops the run there."""
    mid, pool, rng = ctx.mid, ctx.pool, ctx.mid.rng
    mid.record["wake_pool"] = {"real": pool.n_real, "dream": len(pool) - pool.n_real}
    mid.record.setdefault("freezing_scores", None)
    dynamics = mid.record.setdefault("dynamics", [])
    for epoch in range(mid.epoch, training.epochs):
        paused = mid.step > 0  # resumed inside this epoch: plan it again from the same generator state
        if paused:
            after_plan, rng.bit_generator.state = rng.bit_generator.state, mid.rng_plan
        else:
            mid.rng_plan = rng.bit_generator.state
        plan = plan_epoch(ctx.state.learner, pool, training.batch_size, training.replay_batch_size, rng)
        in_trial = trial is not None and epoch == 0
        ctx.describe(f"{'freezing trial' if in_trial else 'wake'} epoch {epoch + 1}/{training.epochs}")
        if paused:
            rng.bit_generator.state = after_plan
        elif epoch == 0 and mid.stm.size:
            mid.stm.observe(real_rows_in_order(plan, pool.n_real), rng)
        if in_trial:
            mid.record["freezing_scores"], entries = trial(pool, plan, ctx.progress)
            dynamics.extend(entries)
        elif not wake_epoch(ctx, plan, Where(mid.task, epoch)):
            ctx.pause_point(mid, True)
        mid.epoch, mid.step = epoch + 1, 0
        ctx.pause_point(mid, False)


def wake_epoch(ctx: TaskContext, plan: EpochPlan, where: Where) -> bool:
    """Run the planned epoch from ``ctx.mid.step``; False when a stop request paused it (at ``mid.step``). A
    finished epoch adds its dynamics entry to the task's record (a paused one keeps its losses in ``mid``)."""
    mid, state, device = ctx.mid, ctx.state, ctx.pool.device
    if mid.step == 0:
        state.wake_steps["replay"] += plan.replay_steps
        state.wake_steps["plain"] += len(plan.steps) - plan.replay_steps
    clock = EpochClock(device)
    losses = step_losses(len(plan.steps), device, mid.epoch_losses)
    monitor = LossMonitor(losses, ctx.checks, where, ctx.progress, mid.step)
    with timed(state.timings, "wake", device):
        images, mid.step = run_epoch(Trainee(state.learner, mid.generator, monitor), ctx.pool, plan, mid.step,
                                     ctx.stop)
    state.wake_images += images
    if mid.step < len(plan.steps):
        mid.epoch_losses = monitor.losses[: mid.step].cpu()
        return False
    epoch_images = sum(len(rows) for rows in plan.host_rows)  # images/s: of the part run in this process
    mid.record["dynamics"].append(clock.entry(PhaseEpoch("wake", where.task, where.epoch), monitor.losses[: mid.step],
                                              epoch_images, timed_images=images))
    mid.epoch_losses = None
    return True
