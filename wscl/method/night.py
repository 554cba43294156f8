"""One sleep's working context [ours]: what every stage of the sleep after a task works with.

NREM replay, plasticity, the STM->LTM merge and staged REM all train (or change) the same learner on the
task's pool, draw from the task's host generator and one device generator, check their losses the same
way and add their epochs to the task's dynamics. ``Night`` carries that bundle, so each stage takes it
plus its own settings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from wscl.method.failures import LossChecks
from wscl.method.feed import Pool
from wscl.method.learners import Learner
from wscl.method.step import check_finite


@dataclass
class Night:
    task: int
    learner: Learner
    pool: Pool                      # the task's wake pool: the STM's rows point into it
    rng: np.random.Generator        # the task's host generator
    generator: torch.Generator      # the sleep's device generator (augmentation)
    checks: LossChecks              # how step losses are checked
    probe: torch.Tensor | None = None  # a prepared batch whose outputs must stay finite after each stage
    dynamics: list[dict] | None = None  # the task's dynamics record; each epoch's entry is appended

    def check(self, stage: str) -> None:
        """Stop the run (exit 5) when ``stage`` left non-finite weights, statistics or outputs."""
        check_finite(self.learner, self.probe, self.task, stage)
