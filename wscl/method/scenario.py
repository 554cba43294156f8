"""The class-incremental scenario (docs/method.md §1): tasks and held-out sets.

Task t holds dataset classes ``t*c .. (t+1)*c - 1``. From each task's training images, per class and
seeded, a validation split and a freezing buffer are held out [code]; they are never trained on. With
``scenario.tune_per_class`` > 0 a tuning split [ours] is held out too: the last images of each class's order,
for every preset, never trained on nor part of another split (docs/method.md, Tuning split).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wscl.data.canonical import CanonicalDataset
from wscl.core.errors import ScenarioError


def _per_class(total: int, n_classes: int) -> np.ndarray:
    """Split a per-task count over its classes (the first classes take the remainder)."""
    counts = np.full(n_classes, total // n_classes)
    counts[: total % n_classes] += 1
    return counts


@dataclass
class Scenario:
    n_tasks: int
    classes_per_task: int
    train_idx: list[np.ndarray]
    val_idx: list[np.ndarray]
    freeze_idx: list[np.ndarray]
    test_idx: list[np.ndarray]
    tune_idx: list[np.ndarray]  # per task the tuning split [ours]; empty arrays without one

    @property
    def has_tune(self) -> bool:
        return any(len(rows) for rows in self.tune_idx)

    @property
    def n_heads(self) -> int:
        return self.n_tasks * self.classes_per_task

    def task_classes(self, t: int) -> np.ndarray:
        c = self.classes_per_task
        return np.arange(t * c, (t + 1) * c)


def subsample_per_class(labels: np.ndarray, classes: np.ndarray, per_class: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of ``classes``, at most ``per_class`` of each (0 = all), drawn with ``rng``."""
    rows = []
    for cls in classes:
        members = np.flatnonzero(labels == cls)
        rows.append(rng.permutation(members)[:per_class] if per_class else members)
    return np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)


def build(ds: CanonicalDataset, n_tasks: int, classes_per_task: int, val_per_task: int,
          freeze_buffer_per_task: int, rng: np.random.Generator, train_per_class: int = 0,
          test_per_class: int = 0, reference: bool = False, tune_per_class: int = 0) -> Scenario:
    """Tasks and their held-out sets. Per class, in a seeded random order [ours], the first
    ``freeze_buffer`` images form the freezing buffer and the next ``val`` the validation split [code].

    Task 0 is never a trial's current task, so it has no validation split, and only the validation
    share is removed from its training images (the freezing buffer lies inside it) [code, docs/method.md §1].
    ``reference`` [code]: the validation split of tasks t > 0 starts one image late, so the image right
    after the freezing buffer is in neither set nor trained on, and the last validation image is also
    trained on; otherwise [ours] the validation split is exactly the next ``val`` images.
    ``tune_per_class`` [ours]: the last images of each class's order form the tuning split, so that without
    one (0) every other set is as before, and that it is the same whatever else is held out.
    """
    needed = n_tasks * classes_per_task
    if needed > len(ds.classes):
        raise ScenarioError(f"scenario.n_tasks x scenario.classes_per_task = {needed} classes, but dataset "
                            f"{ds.name!r} has {len(ds.classes)}; lower one of them")
    train_y, test_y = np.asarray(ds.train_y), np.asarray(ds.test_y)
    train, val, freeze, test, tune = [], [], [], [], []
    for t in range(n_tasks):
        classes = np.arange(t * classes_per_task, (t + 1) * classes_per_task)
        n_val = _per_class(val_per_task, classes_per_task)
        n_fb = _per_class(freeze_buffer_per_task, classes_per_task)
        tr, va, fb, tu = [], [], [], []
        for k, cls in enumerate(classes):
            idx = rng.permutation(subsample_per_class(train_y, [cls], train_per_class, rng))
            held = max(n_val[k], n_fb[k]) if t == 0 else n_val[k] + n_fb[k]
            end = len(idx) - tune_per_class  # the tuning images follow every other set
            if end <= held + int(reference):
                raise ScenarioError(
                    f"class {ds.classes[cls]!r} has {len(idx)} training images, too few to hold out "
                    f"{n_val[k]} (scenario.val_per_task) + {n_fb[k]} (scenario.freeze_buffer_per_task)"
                    + (f" + {tune_per_class} (scenario.tune_per_class)" if tune_per_class else ""))
            fb.append(idx[: n_fb[k]])
            if t > 0:
                start = n_fb[k] + int(reference)
                va.append(idx[start: start + n_val[k]])
            tr.append(idx[held: end])
            tu.append(idx[end:])
        train.append(np.sort(np.concatenate(tr)))
        val.append(np.sort(np.concatenate(va)) if va else np.zeros(0, np.int64))
        freeze.append(np.sort(np.concatenate(fb)))
        tune.append(np.sort(np.concatenate(tu)))
        test.append(subsample_per_class(test_y, classes, test_per_class, rng))
    return Scenario(n_tasks, classes_per_task, train, val, freeze, test, tune)


def from_config(ds: CanonicalDataset, cfg: dict) -> Scenario:
    """The scenario of a run: ``build`` with its settings, seeded by (seed, 1). The tuning split is held out
    whatever ``hold_out`` says, so that every preset is scored on the same images."""
    sc, held = cfg["scenario"], cfg["scenario"]["hold_out"]  # nothing held out for plain baselines [code]
    return build(ds, sc["n_tasks"], sc["classes_per_task"], sc["val_per_task"] if held else 0,
                 sc["freeze_buffer_per_task"] if held else 0, np.random.default_rng([cfg["seed"], 1]),
                 sc["train_per_class"], sc["test_per_class"], reference=cfg["fidelity"] == "reference",
                 tune_per_class=sc.get("tune_per_class", 0))  # absent from a model released before it
