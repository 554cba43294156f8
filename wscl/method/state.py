"""What a run carries from one task to the next, as one object that is checkpointed as a whole.

``state_dict`` and ``load_state_dict`` are derived from the fields: a member with its own
``state_dict`` (learner, head book) saves and restores itself in place, a dataclass member field by
field, anything else is stored as it is. A new field is therefore checkpointed without further edits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from wscl.method.evaluation import AccuracyMatrices
from wscl.method.heads import HeadBook
from wscl.method.learners import Learner

PHASES = ("assignment", "wake", "freezing_trial", "nrem", "rem", "eval")


@dataclass
class RunState:
    learner: Learner
    book: HeadBook
    accuracy: AccuracyMatrices
    next_task: int = 0                       # the first task not yet finished
    history: list[dict] = field(default_factory=list)  # one record per finished task
    timings: dict[str, float] = field(default_factory=lambda: {p: 0.0 for p in PHASES})  # seconds per phase
    wake_images: int = 0                     # stream images trained on in wake epochs (throughput)
    wake_steps: dict[str, int] = field(default_factory=lambda: {"plain": 0, "replay": 0})  # without / with replay
    tune: AccuracyMatrices | None = None     # the accuracy matrices on the tuning split [ours]; None without one

    def state_dict(self) -> dict:
        return fields_state(self)

    def load_state_dict(self, saved: dict) -> None:
        load_fields(self, saved)

    def task_seconds(self) -> dict[str, float] | None:
        """Seconds per phase of the task that just ended: the run's totals so far minus the finished tasks'
        (kept in their records, so a resumed run still splits them right). None when an earlier task's are
        unknown (a checkpoint from a version without them): the difference would not be this task's alone."""
        if any(h.get("wall_seconds") is None for h in self.history):
            return None
        return {phase: round(total - sum(h["wall_seconds"][phase] for h in self.history), 4)
                for phase, total in self.timings.items() if phase in PHASES}

    def field_names(self) -> set[str]:
        return {f.name for f in dataclasses.fields(self)}


def fields_state(obj) -> dict:
    """The dataclass ``obj`` as a dict of its fields' states."""
    return {f.name: member_state(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def member_state(value):
    if hasattr(value, "state_dict"):
        return value.state_dict()
    return fields_state(value) if dataclasses.is_dataclass(value) else value


def load_fields(obj, saved: dict) -> None:
    """Load ``saved`` (from :func:`fields_state`) into the dataclass ``obj``, members in place."""
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        if hasattr(current, "load_state_dict"):
            current.load_state_dict(saved[f.name])
        elif dataclasses.is_dataclass(current):
            load_fields(current, saved[f.name])
        else:
            setattr(obj, f.name, saved[f.name])
