"""Dynamic freezing [paper][code], in epoch 0 of every task t > 0.

K+1 copies of the learner train on the same epoch-0 batches: copy 0 freezes nothing new, copy k
also freezes everything up to and including the k-th still-trainable candidate block. The copy with
the lowest held-out cross-entropy wins (ties: least freezing).
"""
from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from wscl.method.dynamics import EpochClock, PhaseEpoch
from wscl.method.evaluation import Scored, batch_cross_entropies
from wscl.method.failures import LossChecks, Where
from wscl.method.feed import ImageSource, Pool
from wscl.method.heads import HeadBook
from wscl.method.learners import Learner
from wscl.method.state import RunState
from wscl.method.step import check_finite
from wscl.method.task import TaskContext
from wscl.method.wake import EpochPlan, LossMonitor, Trainee, run_in_lockstep, step_losses
from wscl.settings.config import Config
from wscl.settings.runtime import timed

PROBE_IMAGES = 32  # validation images whose outputs must stay finite in every copy after the trial


@dataclass
class HeldOut:
    """Rows of the training source and their heads: the current task's validation split, or the
    previous task's freezing buffer."""
    rows: np.ndarray
    heads: torch.Tensor


@dataclass
class TrialSpec:
    """Everything the trial of one task needs besides the learner and the planned epoch 0."""
    source: ImageSource       # the training images; both held-out sets are rows of it
    validation: HeldOut       # the current task's validation split
    freeze_buffer: HeldOut    # the previous task's freezing buffer
    mode: str                 # what is scored: training | buffer | training_and_buff
    reference: bool           # the authors' scoring arithmetic [code] or ours
    score_batch_size: int
    generator_seed: int       # augmentation of every copy's epoch (the same for all copies), +1 for scoring
    checks: LossChecks        # the copies' loss checks
    where: Where              # the trial's task and epoch (0), for messages and records


@dataclass
class TrialResult:
    winner: Learner
    depths: list[int]
    scores: list[float]
    dynamics: list[dict]  # each copy's epoch (wscl/method/dynamics.py)

    @property
    def chosen_depth(self) -> int:
        return self.winner.frozen_blocks


def candidate_depths(learner: Learner) -> list[int]:
    """Frozen-block counts to try: the current one, then each still-trainable candidate block."""
    return list(range(learner.frozen_blocks, learner.net.N_FREEZABLE_BLOCKS + 1))


def score(learner: Learner, spec: TrialSpec) -> float:
    """Held-out cross-entropy of one trial copy; lower is better.

    reference [code, docs/method.md §2.3]: the previous task's freezing buffer is scored first, then the current
    validation split (BatchNorm statistics update while scoring, so the order matters); each loss is
    the mean of per-batch mean losses; the validation loss and the combined score are rounded to 2
    decimals (Python's ``round``, as the authors). corrected [ours]: per-image means, unrounded.
    """
    mode, reference, batch_size = spec.mode, spec.reference, spec.score_batch_size

    def losses(held: HeldOut) -> tuple[list[float], int]:
        gen = torch.Generator(device=spec.source.device).manual_seed(spec.generator_seed + 1)
        scored = Scored(spec.source, held.rows, held.heads, learner.preprocess, batch_size)
        return batch_cross_entropies(learner.net, scored, reference, gen)

    parts = {}
    for name, held in (("buffer", spec.freeze_buffer), ("training", spec.validation)):  # [code] buffer first
        if mode in (name, "training_and_buff"):
            batch_means, n = losses(held)
            if reference:
                parts[name] = statistics.mean(batch_means) if batch_means else 0.0
            else:
                sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
                parts[name] = sum(m * k for m, k in zip(batch_means, sizes)) / max(n, 1)
    if reference and "training" in parts:
        parts["training"] = round(parts["training"], 2)
    if mode != "training_and_buff":
        return parts[mode]
    combined = statistics.mean([parts["training"], parts["buffer"]])
    return round(combined, 2) if reference else combined


def runs_trial(task: int, enabled: bool) -> bool:
    """[paper][code] The trial takes the place of epoch 0 of every task after the first."""
    return enabled and task > 0


def held_out(rows: np.ndarray, labels: np.ndarray, book: HeadBook, device: torch.device) -> HeldOut:
    """``rows`` of the training set with the heads of their classes."""
    return HeldOut(rows, torch.as_tensor(book.heads_of(labels[rows]), device=device))


def trial_spec(ctx: TaskContext, cfg: Config) -> TrialSpec:
    """The trial of task ``ctx.task`` as configured."""
    reference, images, task = cfg.fidelity == "reference", ctx.images, ctx.task
    score_batch_size = cfg.training.batch_size if reference else cfg.runtime.eval_batch_size
    return TrialSpec(images.source, held_out(images.scenario.val_idx[task], images.labels, ctx.state.book,
                                             images.source.device),
                     held_out(images.scenario.freeze_idx[task - 1], images.labels, ctx.state.book,
                              images.source.device),
                     cfg.wscl.freezing.mode, reference, score_batch_size, ctx.seed + 7919, ctx.checks, Where(task, 0))


class PrefixTape:
    """The frozen prefix's outputs for one training step, computed once for every copy [ours].

    Every copy that freezes through block k >= 1 holds the trial's starting weights in stages 0..k, and all
    copies see the same batches (same plan, same augmentation seed, same replay memory), so in training
    mode their prefixes compute the same activations and BatchNorm statistic updates. The tape runs one
    private copy of the starting network through the deepest prefix for each forward call of a step and
    hands copy k the output of its stage k; the same operations on the same tensors, hence bit-identical.
    """

    def __init__(self, net, depth: int, verify: bool):
        self.stages = copy.deepcopy(net.stages[: depth + 1])
        for stage in self.stages:
            stage.train()
            stage.requires_grad_(False)  # frozen in every copy that reads it
        self.verify = verify  # compare each copy's input with the recorded one (cheap on a CPU, a sync on a GPU)
        self.calls: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
        self.readers: list[FromPrefix] = []

    def new_step(self) -> None:
        self.calls.clear()
        for reader in self.readers:
            reader.call = 0

    def outputs(self, call: int, x: torch.Tensor) -> list[torch.Tensor]:
        if call < len(self.calls):
            recorded, outs = self.calls[call]
            if self.verify and not torch.equal(recorded, x):
                raise RuntimeError("freezing copies diverged on their inputs; the prefix cannot be shared")
            return outs
        outs, h = [], x
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        self.calls.append((x, outs))
        return outs

    def copy_statistics(self, net, depth: int) -> None:
        """The prefix's BatchNorm running statistics, as the copy's own prefix would have updated them."""
        for mine, shared in zip(net.stages[: depth + 1], self.stages):
            for dst, src in zip(mine.buffers(), shared.buffers()):
                dst.copy_(src)


class FromPrefix(torch.nn.Module):
    """A copy's network during the trial: starts from the tape's output of its last frozen stage."""

    def __init__(self, net, tape: PrefixTape, depth: int):
        super().__init__()
        self.net, self.tape, self.depth, self.call = net, tape, depth, 0
        tape.readers.append(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self.tape.outputs(self.call, x)
        self.call += 1
        return self.net(outs[self.depth], start=self.depth + 1)


def train_copies(copies: list[Learner], pool: Pool, plan: EpochPlan, spec: TrialSpec, progress=None) -> list[dict]:
    """Train every copy on the planned epoch, step by step in lockstep, sharing the frozen prefix. Returns
    each copy's dynamics entry (their clock is the trial's)."""
    device = pool.device
    clock = EpochClock(device)
    shared = [c for c in copies if c.frozen_blocks > 0]
    tape = None
    if len(shared) > 1:
        tape = PrefixTape(shared[0].net, max(c.frozen_blocks for c in shared), verify=device.type == "cpu")
        for c in shared:
            c.net = FromPrefix(c.net, tape, c.frozen_blocks)
    trainees = [Trainee(c, torch.Generator(device=device).manual_seed(spec.generator_seed),
                        LossMonitor(step_losses(len(plan.steps), device), spec.checks, spec.where.of_copy(i), progress))
                for i, c in enumerate(copies)]
    try:
        images, _ = run_in_lockstep(trainees, pool, plan, before_step=tape.new_step if tape else None)
    finally:
        for c in copies:
            if isinstance(c.net, FromPrefix):
                c.net = c.net.net
                tape.copy_statistics(c.net, c.frozen_blocks)
    task = spec.where.task
    return [clock.entry(PhaseEpoch("freezing_trial", task, 0, copy=i), t.monitor.losses[: len(plan.steps)], images)
            for i, t in enumerate(trainees)]


def run_trial(learner: Learner, pool: Pool, plan: EpochPlan, spec: TrialSpec, progress=None) -> TrialResult:
    """Train every copy on the same planned epoch and keep the best (lowest score, then least freezing)."""
    depths = candidate_depths(learner)
    copies = []
    for depth in depths:
        candidate = copy.deepcopy(learner)
        candidate.freeze_through(depth)
        copies.append(candidate)
    entries = train_copies(copies, pool, plan, spec, progress)
    probe = learner.preprocess(spec.source.take(spec.validation.rows[:PROBE_IMAGES]), None, train=False)
    for i, candidate in enumerate(copies):
        check_finite(candidate, probe, spec.where.task, f"freezing trial (copy {i})")
    best, best_score, scores = None, None, []
    for candidate in copies:  # scored one by one, as each copy's score changes only its own BatchNorm statistics
        s = score(candidate, spec)
        scores.append(s)
        if best is None or s < best_score:  # strict: ties keep the least freezing
            best, best_score = candidate, s
    return TrialResult(best, depths, scores, entries)


def adopt(learner: Learner, result: TrialResult, reference: bool) -> Learner:
    """Continue with the winner. ``reference`` [code, docs/method.md §2b.1]: only the network weights and the
    freezing come back; the main learner's memory and seen heads miss the epoch-0 samples."""
    if not reference:
        return result.winner
    learner.freeze_through(result.chosen_depth)
    learner.net.load_state_dict(result.winner.net.state_dict())
    learner.opt = torch.optim.SGD(learner.net.parameters(), lr=learner.opt.param_groups[0]["lr"])
    return learner


def task_trial(ctx: TaskContext, cfg: Config) -> Callable | None:
    """The trial of task ``ctx.task`` as ``wake.wake_phase`` runs it, in place of epoch 0; None: no trial."""
    if not runs_trial(ctx.task, cfg.wscl.freezing.enabled):
        return None
    return partial(trial_epoch, ctx.state, trial_spec(ctx, cfg))


def trial_epoch(state: RunState, spec: TrialSpec, pool: Pool, plan: EpochPlan,
                progress=None) -> tuple[dict[str, float], list[dict]]:
    """Epoch 0 of a task t > 0 trains the trial's copies; the run goes on with the winner. Returns the
    score of each candidate depth and the copies' dynamics entries."""
    with timed(state.timings, "freezing_trial", pool.device):
        result = run_trial(state.learner, pool, plan, spec, progress)
        state.learner = adopt(state.learner, result, spec.reference)
    return dict(zip(map(str, result.depths), result.scores)), result.dynamics
