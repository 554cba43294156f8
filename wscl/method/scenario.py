"""The class-incremental scenario (docs/method.md §1): tasks and held-out sets.

Task t holds dataset classes ``t*c .. (t+1)*c - 1``. From each task's training images, per class and
seeded, a validation split and a freezing buffer are held out [code]; they are never trained on. With
``scenario.tune_per_class`` > 0 a tuning split [ours] is held out too, for every preset, never trained on nor
part of another split (docs/method.md, Tuning split).

Independent random streams [ours]: each subset (the tuning split, the freezing buffer, the validation split,
the training images and the test subsample) draws from a generator of its own, seeded by (run seed, the
subset's name, class), so that changing one subset's size changes no other subset's draw. The held-out sets
are drawn in a fixed order (tuning, freezing buffer, validation, training), each one skipping the images an
earlier one took: a larger earlier set changes a later one only by the images both drew.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from wscl.core.errors import ScenarioError
from wscl.data.canonical import CanonicalDataset
from wscl.settings.config import Config

STREAMS = ("tune", "freeze_buffer", "validation", "train", "test")


def stream(seed: int, name: str, cls: int) -> np.random.Generator:
    """The generator of subset ``name`` for class ``cls`` of the run seeded ``seed`` (a stable hash of the name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), cls])


def _per_class(total: int, n_classes: int) -> np.ndarray:
    """Split a per-task count over its classes (the first classes take the remainder)."""
    counts = np.full(n_classes, total // n_classes)
    counts[: total % n_classes] += 1
    return counts


@dataclass(frozen=True)
class Sizes:
    """How many images each subset takes (the ``scenario`` settings; 0 = none, or all for train and test)."""
    n_tasks: int
    classes_per_task: int
    val_per_task: int = 0
    freeze_buffer_per_task: int = 0
    train_per_class: int = 0
    test_per_class: int = 0
    tune_per_class: int = 0


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


def _draw(members: np.ndarray, rng: np.random.Generator, taken: np.ndarray) -> np.ndarray:
    """``members`` in ``rng``'s order, less those already ``taken`` (the order of the whole class, so that what an
    earlier subset took shifts this one only where both drew the same image)."""
    order = rng.permutation(members)
    return order[~np.isin(order, taken)]


def _one_class(members: np.ndarray, cls: int, seed: int, held: tuple[int, int, int, int],
               reference: bool) -> tuple[np.ndarray, ...]:
    """(training, validation, freezing buffer, tuning) rows of one class; ``held``: the sizes of the tuning split,
    the freezing buffer and the validation split, and how many images the latter two remove from training."""
    n_tune, n_fb, n_val, n_out = held
    tune = stream(seed, "tune", cls).permutation(members)[:n_tune]
    freeze = _draw(members, stream(seed, "freeze_buffer", cls), tune)[:n_fb]
    # task 0 removes max(val, buffer) images, the buffer among them; tasks t > 0 the buffer and the validation
    # split. `reference` [code]: the authors' validation window starts one image late, so that one image is in
    # neither set and the last validation image is also trained on; here the same: the image after the split
    # is left out, the split's last image trained on (the split itself stays the first ``val`` candidates)
    candidates = _draw(members, stream(seed, "validation", cls), np.concatenate([tune, freeze]))
    val = candidates[:n_val]
    out = candidates[: n_out - len(freeze)]
    if reference and n_val:
        out = np.concatenate([candidates[: n_val - 1], candidates[n_val: n_val + 1]])
    removed = np.concatenate([tune, freeze, out])
    train = _draw(members, stream(seed, "train", cls), removed)
    return train, val, freeze, tune


def build(ds: CanonicalDataset, sizes: Sizes, seed: int, reference: bool = False) -> Scenario:
    """Tasks and their held-out sets, per class from independent streams (module docstring).

    Task 0 is never a trial's current task, so it has no validation split, and only the validation
    share is removed from its training images (the freezing buffer lies inside it) [code, docs/method.md §1].
    ``reference`` [code]: the validation split of tasks t > 0 starts one image late, so one image is in neither
    set nor trained on, and the last validation image is also trained on; otherwise [ours] the validation split
    is exactly the next ``val`` images. ``train_per_class`` [ours]: the class's training images are at most that
    many of those left after the held-out sets.
    """
    n_tasks, per_task = sizes.n_tasks, sizes.classes_per_task
    needed = n_tasks * per_task
    if needed > len(ds.classes):
        raise ScenarioError(f"scenario.n_tasks x scenario.classes_per_task = {needed} classes, but dataset "
                            f"{ds.name!r} has {len(ds.classes)}; lower one of them")
    train_y, test_y = np.asarray(ds.train_y), np.asarray(ds.test_y)
    train, val, freeze, test, tune = [], [], [], [], []
    for t in range(n_tasks):
        classes = np.arange(t * per_task, (t + 1) * per_task)
        n_val = _per_class(sizes.val_per_task, per_task)
        n_fb = _per_class(sizes.freeze_buffer_per_task, per_task)
        parts: list[tuple[np.ndarray, ...]] = []
        for k, cls in enumerate(classes):
            members = np.flatnonzero(train_y == cls)
            val_k = 0 if t == 0 else int(n_val[k])
            n_out = max(n_val[k], n_fb[k]) if t == 0 else n_val[k] + n_fb[k]
            _check_room(ds, int(cls), len(members), (int(n_val[k]), int(n_fb[k]), sizes.tune_per_class),
                        int(n_out) + int(reference and t > 0))
            tr, va, fb, tu = _one_class(members, int(cls), seed,
                                        (sizes.tune_per_class, int(n_fb[k]), val_k, int(n_out)), reference and t > 0)
            parts.append((tr[: sizes.train_per_class] if sizes.train_per_class else tr, va, fb, tu))
        for out, column in zip((train, val, freeze, tune), zip(*parts)):
            out.append(np.sort(np.concatenate(column)).astype(np.int64))
        test.append(np.sort(np.concatenate([
            subsample_per_class(test_y, [cls], sizes.test_per_class, stream(seed, "test", int(cls)))
            for cls in classes])))
    return Scenario(n_tasks, per_task, train, val, freeze, test, tune)


def _check_room(ds: CanonicalDataset, cls: int, n_images: int, held: tuple[int, int, int], n_out: int) -> None:
    """At least one training image must be left once ``n_out`` images and the tuning split are held out."""
    n_val, n_fb, n_tune = held
    if n_images - n_tune <= n_out:
        raise ScenarioError(
            f"class {ds.classes[cls]!r} has {n_images} training images, too few to hold out "
            f"{n_val} (scenario.val_per_task) + {n_fb} (scenario.freeze_buffer_per_task)"
            + (f" + {n_tune} (scenario.tune_per_class)" if n_tune else ""))


def from_config(ds: CanonicalDataset, cfg: Config) -> Scenario:
    """The scenario of a run: ``build`` with its settings and seed. The tuning split is held out whatever
    ``hold_out`` says, so that every preset is scored on the same images."""
    sc, held = cfg.scenario, cfg.scenario.hold_out  # nothing held out for plain baselines [code]
    sizes = Sizes(sc.n_tasks, sc.classes_per_task, sc.val_per_task if held else 0,
                  sc.freeze_buffer_per_task if held else 0, sc.train_per_class, sc.test_per_class,
                  sc.tune_per_class)
    return build(ds, sizes, cfg.seed, reference=cfg.fidelity == "reference")
