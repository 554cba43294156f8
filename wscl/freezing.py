"""Dynamic freezing [paper][code], in epoch 0 of every task t > 0.

K+1 copies of the learner train on the same epoch-0 batches: copy 0 freezes nothing new, copy k
also freezes everything up to and including the k-th still-trainable candidate block. The copy with
the lowest held-out cross-entropy wins (ties: least freezing).
"""
from __future__ import annotations

import copy
import statistics
from dataclasses import dataclass

import numpy as np
import torch

from .evaluation import batch_cross_entropies
from .learners import Learner
from .scenario import ImageSource, Pool
from .wake import EpochPlan, run_epoch


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
    nan_check_every: int
    where: str = ""           # for error messages: task and epoch


@dataclass
class TrialResult:
    winner: Learner
    depths: list[int]
    scores: list[float]

    @property
    def chosen_depth(self) -> int:
        return self.winner.frozen_blocks


def candidate_depths(learner: Learner) -> list[int]:
    """Frozen-block counts to try: the current one, then each still-trainable candidate block."""
    return list(range(learner.frozen_blocks, learner.net.N_FREEZABLE_BLOCKS + 1))


def score(learner: Learner, source: ImageSource, validation: HeldOut, freeze_buffer: HeldOut, mode: str,
          reference: bool, batch_size: int, generator_seed: int) -> float:
    """Held-out cross-entropy of one trial copy; lower is better.

    reference [code, spec §2]: the previous task's freezing buffer is scored first, then the current
    validation split (BatchNorm statistics update while scoring, so the order matters); each loss is
    the mean of per-batch mean losses; the validation loss and the combined score are rounded to 2
    decimals (Python's ``round``, as the authors). corrected [ours]: per-image means, unrounded.
    """
    def losses(held: HeldOut) -> tuple[list[float], int]:
        gen = torch.Generator(device=source.device).manual_seed(generator_seed)
        return batch_cross_entropies(learner.net, source, held.rows, held.heads, learner.preprocess, batch_size,
                                     reference, gen)

    parts = {}
    for name, held in (("buffer", freeze_buffer), ("training", validation)):  # [code] order: buffer first
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


def runs_trial(task: int, epoch: int, enabled: bool) -> bool:
    """[paper][code] The trial takes the place of epoch 0 of every task after the first."""
    return enabled and task > 0 and epoch == 0


def run_trial(learner: Learner, pool: Pool, plan: EpochPlan, spec: TrialSpec, progress=None) -> TrialResult:
    """Train every copy on the same planned epoch and keep the best (lowest score, then least freezing)."""
    best, best_score, depths, scores = None, None, [], []
    for depth in candidate_depths(learner):
        candidate = copy.deepcopy(learner)
        candidate.freeze_through(depth)
        generator = torch.Generator(device=pool.device).manual_seed(spec.generator_seed)
        run_epoch(candidate, pool, plan, generator, spec.nan_check_every,
                  f"{spec.where} (freezing copy {len(depths)})", progress)
        s = score(candidate, spec.source, spec.validation, spec.freeze_buffer, spec.mode, spec.reference,
                  spec.score_batch_size, spec.generator_seed + 1)
        depths.append(depth)
        scores.append(s)
        if best is None or s < best_score:  # strict: ties keep the least freezing
            best, best_score = candidate, s
    return TrialResult(best, depths, scores)


def adopt(learner: Learner, result: TrialResult, reference: bool) -> Learner:
    """Continue with the winner. ``reference`` [code, spec §2b.1]: only the network weights and the
    freezing come back; the main learner's memory and seen heads miss the epoch-0 samples."""
    if not reference:
        return result.winner
    learner.freeze_through(result.chosen_depth)
    learner.net.load_state_dict(result.winner.net.state_dict())
    learner.opt = torch.optim.SGD(learner.net.parameters(), lr=learner.opt.param_groups[0]["lr"])
    return learner
