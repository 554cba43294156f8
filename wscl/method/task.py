"""One task of a run [ours]: where it stands (``MidTask``) and what each of its phases works with (``TaskContext``).

Every random draw of task t comes from generators seeded by (seed, t) (``seeds_for``), so a run resumed from
the checkpoint of task t-1 continues exactly as an uninterrupted one; ``MidTask`` holds those generators and
what the task has built so far, so a checkpoint written inside the task resumes exactly too. ``TaskContext``
bundles what wake, the freezing trial and sleep share, so that each phase takes it plus its own section of the
configuration.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from wscl.method.failures import LossChecks
from wscl.method.feed import ImageSource, Pool
from wscl.method.memory import ShortTermMemory
from wscl.method.scenario import Scenario
from wscl.method.state import RunState


def seeds_for(seed: int, task: int) -> tuple[np.random.Generator, int]:
    """Host generator and device-generator seed for task ``task`` (independent of earlier tasks)."""
    seq = np.random.SeedSequence([seed, task])
    return np.random.default_rng(seq), int(seq.generate_state(1)[0])


@dataclass
class MidTask:
    """Task ``task`` under way: what it has built so far and where its wake phase stands. Saved whole as the
    ``position`` of a checkpoint written inside the task."""
    task: int
    record: dict                    # the task's record so far (heads, dream binding, freezing scores)
    stm: ShortTermMemory
    rng: np.random.Generator        # the task's host generator
    generator: torch.Generator      # the task's wake augmentation and replay generator
    epoch: int = 0                  # the wake epoch under way (== training.epochs: wake is done)
    step: int = 0                   # steps of that epoch done (0: not started)
    rng_plan: dict | None = None    # the host generator's state before that epoch was planned
    epoch_losses: torch.Tensor | None = None  # the step losses of that epoch so far (its dynamics entry)

    @classmethod
    def start(cls, task: int, seed: int, stm_size: int, device: torch.device) -> MidTask:
        """Task ``task`` before anything: an empty STM and the task's generators, seeded by (seed, task)."""
        rng, generator_seed = seeds_for(seed, task)
        return cls(task, {}, ShortTermMemory(stm_size), rng, torch.Generator(device=device).manual_seed(generator_seed))

    def where(self, epochs: int) -> str:
        """Where the task stands, for the log, of ``epochs`` wake epochs."""
        if self.epoch == epochs:
            return "wake done"
        return f"wake epoch {self.epoch + 1}" + (f", step {self.step}" if self.step else "")

    def state_dict(self) -> dict:
        return {"task": self.task, "record": self.record, "stm": self.stm.state_dict(),
                "rng": self.rng.bit_generator.state, "generator": self.generator.get_state(),
                "epoch": self.epoch, "step": self.step, "rng_plan": self.rng_plan, "epoch_losses": self.epoch_losses}

    def load_state_dict(self, saved: dict) -> None:
        self.record, self.epoch, self.step, self.rng_plan = saved["record"], saved["epoch"], saved["step"], \
            saved["rng_plan"]
        self.stm.load_state_dict(saved["stm"])
        self.rng.bit_generator.state = saved["rng"]
        self.generator.set_state(saved["generator"].cpu())
        self.epoch_losses = saved.get("epoch_losses")


PROBE_IMAGES = 32  # the probe batch's size: enough images for every BatchNorm channel to see several values


@dataclass(frozen=True)
class TrainingImages:
    """A run's training images: the source, their labels and the scenario that splits them into tasks."""
    source: ImageSource
    labels: np.ndarray
    scenario: Scenario

    def pool(self, task: int, heads_of: Callable, dreams: tuple | None) -> Pool:
        """What task ``task``'s wake phase trains on: its training images, with the interleaved dreams if any."""
        rows = self.scenario.train_idx[task]
        parts = [(self.source, rows, heads_of(self.labels[rows]), rows)]
        return Pool(parts if dreams is None else parts + [dreams], self.source.device)

    def probe(self, task: int, preprocess) -> torch.Tensor:
        """Task ``task``'s first training images, prepared without augmentation: the batch whose outputs must
        stay finite after every phase (wscl/method/step.py, ``check_finite``)."""
        return preprocess(self.source.take(self.scenario.train_idx[task][:PROBE_IMAGES]), None, train=False)


@dataclass
class TaskContext:
    """Task ``mid.task`` of a run: what every phase of it works with."""
    mid: MidTask                 # where the task stands: its record, STM and generators
    state: RunState              # what carries over between tasks: learner, head book, timings
    images: TrainingImages       # the run's training images
    pool: Pool                   # the images the task's wake phase trains on (with interleaved dreams)
    checks: LossChecks           # the loss checks every step of the task runs
    seed: int                    # the task's device-generator seed (``seeds_for``)
    progress: object = None      # a tqdm bar (or None): what the task is doing
    stop: Callable[[], object] = lambda: None  # names a received stop request, else None
    pause_point: Callable[[MidTask, bool], None] = lambda mid, paused: None  # checkpoints or stops the run

    @property
    def task(self) -> int:
        return self.mid.task

    def describe(self, doing: str) -> None:
        if self.progress is not None:
            self.progress.set_description(f"task {self.task + 1}/{self.images.scenario.n_tasks} {doing}")
