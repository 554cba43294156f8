"""Running the network for evaluation, head assignment and freezing scores; the accuracy matrices a run
fills (docs/method.md §4) with the random-init baselines of forward transfer."""
from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wscl.core.safe_io import DamagedFile, atomic_write_text, read_verified
from wscl.method.augment import Preprocess
from wscl.method.feed import ImageSource
from wscl.method.metrics import summary, to_json_matrix
from wscl.method.scenario import Scenario
from wscl.settings.config import Config
from wscl.settings.runtime import Runtime, synchronize, timed

SETTINGS = ("class_il", "task_il")
TIMED_PASSES = 3
SWITCH_MARGIN = 1.10  # another layout must be 10% faster than the training one to replace it
LAYOUT_FILE = "eval_layout.json"  # the measured evaluation layout, kept in the run folder


@dataclass(frozen=True)
class EvalLayout:
    """How evaluation and head assignment run the network [ours]: memory format and batch size."""
    channels_last: bool
    batch_size: int
    decided_by: str
    images_per_second: dict = field(default_factory=dict)  # per measured candidate

    def describe(self) -> dict:
        return {"eval_memory_format": "channels_last" if self.channels_last else "contiguous",
                "eval_batch_size": self.batch_size, "eval_layout_decided_by": self.decided_by,
                "eval_images_per_second": self.images_per_second}


def infer(net, batches: Iterable[torch.Tensor], preprocess: Preprocess,
          generator: torch.Generator | None = None) -> torch.Tensor:
    """Eval-mode logits of uint8 ``batches``, augmented only with a ``generator``; no autograd state at all."""
    net.train(False)
    with torch.inference_mode():
        out = [net(preprocess(raw, generator, train=generator is not None)).float() for raw in batches]
    return torch.cat(out) if out else torch.zeros(0)


def logits_of(net, source: ImageSource, rows: np.ndarray, preprocess: Preprocess, batch_size: int,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Eval-mode logits for ``rows`` of ``source``; augmented only when given a generator."""
    return infer(net, (source.take(rows[start: start + batch_size]) for start in range(0, len(rows), batch_size)),
                 preprocess, generator)


def measure_layouts(net, image_shape, normalisation, device: torch.device, batch_sizes: tuple[int, ...],
                    default_channels_last: bool) -> EvalLayout:
    """The fastest (memory format, batch size) for eval-mode inference of ``net``, timed here on random
    images: per candidate one warm-up batch, then the best of ``TIMED_PASSES``. Another layout than the
    default (the training format at ``batch_sizes[0]``) wins only when ``SWITCH_MARGIN`` faster, so timing
    noise does not switch the layout, and with it the logits at float level, between reruns of a run."""
    rates = {}
    for channels_last in (False, True):
        pre = Preprocess(*normalisation, False, device, channels_last)
        for bs in batch_sizes:
            raw = torch.randint(0, 256, (bs, *image_shape), dtype=torch.uint8, device=device)
            infer(net, [raw], pre)  # warm-up
            seconds = []
            for _ in range(TIMED_PASSES):
                start = time.perf_counter()
                infer(net, [raw], pre)
                synchronize(device)
                seconds.append(time.perf_counter() - start)
            rates[(channels_last, bs)] = bs / min(seconds)
    default = (default_channels_last, batch_sizes[0])
    fastest = max(rates, key=rates.get)
    chosen = fastest if rates[fastest] >= SWITCH_MARGIN * rates[default] else default
    return EvalLayout(*chosen, "measured",
                      {f"{'channels_last' if c else 'contiguous'}/{b}": round(r, 1) for (c, b), r in rates.items()})


@dataclass(frozen=True)
class NetInputs:
    """What the network is given: images of this shape, normalised with these (mean, std)."""
    image_shape: tuple
    normalisation: tuple


@dataclass(frozen=True)
class KeptLayout:
    """Where a run keeps its chosen layout (its folder), the fingerprint the choice is tied to, and the timings
    that count the measuring."""
    folder: Path
    fingerprint: str
    timings: dict


def choose_layout(cfg: Config, runtime: Runtime, scenario: Scenario, net, inputs: NetInputs,
                  kept: KeptLayout) -> EvalLayout:
    """Memory format and batch size of evaluation and head assignment [ours]. reference: the training
    format and runtime.eval_batch_size, bit-identical to the authors' arithmetic (another format changes
    logits at float level). corrected: the fastest measured here (see ``measure_layouts``), unless measuring
    would cost over 5% of the run's inference; kept in the run folder, so a resumed run evaluates as the
    uninterrupted one."""
    bs, cl = cfg.runtime.eval_batch_size, runtime.channels_last
    if cfg.fidelity == "reference":
        return EvalLayout(cl, bs, "reference: the training memory format and runtime.eval_batch_size")
    saved, fingerprint = kept.folder / LAYOUT_FILE, kept.fingerprint
    if saved.exists():
        try:
            found = json.loads(read_verified(saved))
        except (DamagedFile, ValueError):  # a damaged choice is measured again, as on the run's first start
            found = {}
        if found.get("fingerprint") == fingerprint:
            return EvalLayout(**found["layout"])
    n_scored, T = sum(len(r) for r in scenario.test_idx + scenario.tune_idx), scenario.n_tasks
    # random init + after every task + before each task t > 0 (test and tuning images); head assignment of t > 0
    required = n_scored * (T + 3) / 2 + sum(len(r) for r in scenario.train_idx[1:])
    if 2 * (1 + TIMED_PASSES) * (bs + 2 * bs) > 0.05 * required:  # 2 formats x passes x 2 batch sizes
        return EvalLayout(cl, bs, "default: too little inference to be worth measuring")
    with timed(kept.timings, "eval_layout", runtime.device):
        layout = measure_layouts(net, inputs.image_shape, inputs.normalisation, runtime.device, (bs, 2 * bs), cl)
    atomic_write_text(saved, json.dumps({"fingerprint": fingerprint, "layout": vars(layout)}), sealed=True)
    return layout


def accuracies(logits: torch.Tensor, target_heads: torch.Tensor, task_heads: torch.Tensor) -> tuple[float, float]:
    """Class-IL (argmax over all heads) and Task-IL (argmax over the task's heads) accuracy, in percent."""
    if len(target_heads) == 0:
        return float("nan"), float("nan")
    class_il = (logits.argmax(1) == target_heads).float().mean()
    task_pred = task_heads[logits[:, task_heads].argmax(1)]
    task_il = (task_pred == target_heads).float().mean()
    return 100.0 * float(class_il), 100.0 * float(task_il)


@dataclass(frozen=True)
class Scored:
    """Images a score is computed on: rows of a source with their heads, how they are prepared, the batch size."""
    source: ImageSource
    rows: np.ndarray
    heads: torch.Tensor
    preprocess: Preprocess
    batch_size: int


def batch_cross_entropies(net, scored: Scored, reference: bool,
                          generator: torch.Generator | None) -> tuple[list[float], int]:
    """Mean cross-entropy of every batch of ``scored.rows`` (in order) and the number of images, for the freezing
    score. ``reference`` reproduces the authors' scoring [code, docs/method.md §2b.2-3]: training mode (BatchNorm
    uses and updates batch statistics), gradients enabled and augmented images."""
    source, rows, heads, preprocess, batch_size = (scored.source, scored.rows, scored.heads, scored.preprocess,
                                                   scored.batch_size)
    net.train(reference)
    ctx = contextlib.nullcontext() if reference else torch.no_grad()
    losses = []
    with ctx:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start: start + batch_size]
            x = preprocess(source.take(chunk), generator if reference else None, train=reference)
            losses.append(float(F.cross_entropy(net(x).float(), heads[start: start + batch_size]).detach()))
    net.train(False)
    return losses, len(rows)


class TestTasks:
    """Every task's test images and how the network scores on them; also the tuning split's images [ours],
    which come from the training images (then ``source`` holds those and ``labels`` their labels)."""

    def __init__(self, source: ImageSource, rows: list[np.ndarray], labels: np.ndarray,
                 task_classes: Callable[[int], np.ndarray], preprocess: Preprocess, batch_size: int):
        self.source, self.rows, self.labels = source, rows, labels
        self.task_classes, self.preprocess, self.batch_size = task_classes, preprocess, batch_size
        # Each task's images gathered once: an evaluation then reads views of them, batch by batch.
        self.images = None if source.mapped else [source.take(r) for r in rows]

    def logits(self, net, task: int) -> torch.Tensor:
        if self.images is None:
            return logits_of(net, self.source, self.rows[task], self.preprocess, self.batch_size)
        images, bs = self.images[task], self.batch_size
        return infer(net, (images[start: start + bs] for start in range(0, len(images), bs)), self.preprocess)

    def evaluate(self, net, task: int, head_of: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """Class-IL and Task-IL accuracy of ``net`` on task ``task``'s test images now."""
        return self.accuracies(self.logits(net, task), task, head_of)

    def baseline(self, random_logits: torch.Tensor, task: int, head_of: Callable[[np.ndarray], np.ndarray],
                 reference: bool) -> tuple[float, float]:
        """FWT's baseline b_task, from the random network's ``random_logits``. [code] the authors score the
        random network with heads in class order; [ours] with the heads task ``task`` is assigned, the same
        heads its later accuracies use."""
        return self.accuracies(random_logits, task, (lambda classes: classes) if reference else head_of)

    def accuracies(self, logits: torch.Tensor, task: int,
                   head_of: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """Class-IL and Task-IL accuracy of ``logits`` on task ``task``, classes mapped to heads by ``head_of``."""
        target = torch.as_tensor(head_of(self.labels[self.rows[task]]), device=logits.device)
        task_heads = torch.as_tensor(head_of(self.task_classes(task)), device=logits.device)
        return accuracies(logits, target, task_heads)


@dataclass
class AccuracyMatrices:
    """Per setting, ``R[i, j]``: accuracy (percent) on task j after training task i, with ``R[i, i+1]``
    measured right after task i+1's head assignment (docs/method.md §4); and the random-init baseline b_j."""
    R: dict[str, np.ndarray]
    random_init: dict[str, np.ndarray]

    @classmethod
    def empty(cls, n_tasks: int) -> AccuracyMatrices:
        return cls({s: np.full((n_tasks, n_tasks), np.nan) for s in SETTINGS},
                   {s: np.full(n_tasks, np.nan) for s in SETTINGS})

    def record(self, after: int, task: int, accs: tuple[float, float]) -> None:
        for setting, value in zip(SETTINGS, accs):
            self.R[setting][after, task] = value

    def record_baseline(self, task: int, accs: tuple[float, float]) -> None:
        for setting, value in zip(SETTINGS, accs):
            self.random_init[setting][task] = value

    def average(self, setting: str, after: int) -> float:
        """Mean accuracy over the tasks seen after training task ``after``."""
        return float(np.mean(self.R[setting][after, : after + 1]))

    def results(self, reference: bool) -> dict:
        """Per setting: the matrix, the baselines and the summary metrics, as metrics.json reports them."""
        return {setting: {"accuracy_matrix": to_json_matrix(self.R[setting]),
                          "random_init_accuracy": [round(float(v), 6) for v in self.random_init[setting]],
                          **summary(self.R[setting], self.random_init[setting], reference)}
                for setting in SETTINGS}


class Scoreboard:
    """What a run is scored on before and after every task: the test tasks and, when there is one, the tuning
    split [ours], each with its accuracy matrices and the randomly initialised network's logits (FWT's
    baselines b_j, computed here, before anything trains)."""

    def __init__(self, boards: list[tuple[AccuracyMatrices, TestTasks]], net, timings: dict, device):
        self.boards, self.timings, self.device = boards, timings, device
        n_tasks = len(boards[0][1].rows)
        with timed(timings, "eval_random_init", device):
            self.random_logits = [[tasks.logits(net, j).cpu() for j in range(n_tasks)] for _, tasks in boards]

    def before_task(self, t: int, net, head_of: Callable, reference: bool) -> None:
        """The random network's baseline on task t and, for t > 0, the accuracy on it before training it
        (docs/method.md §4)."""
        for (matrices, tasks), random_logits in zip(self.boards, self.random_logits):
            matrices.record_baseline(t, tasks.baseline(random_logits[t], t, head_of, reference))
            if t > 0:
                with timed(self.timings, "eval", self.device):
                    matrices.record(t - 1, t, tasks.evaluate(net, t, head_of))

    def after_task(self, t: int, net, head_of: Callable, n_heads: int) -> torch.Tensor:
        """The accuracy on every task seen after training task t; returns how many test images each head
        predicts (for the collapse check)."""
        head_counts = torch.zeros(n_heads, dtype=torch.long, device=self.device)
        with timed(self.timings, "eval", self.device):
            (test_matrices, tests), *tuning = self.boards
            for j in range(t + 1):
                logits = tests.logits(net, j)
                test_matrices.record(t, j, tests.accuracies(logits, j, head_of))
                head_counts += torch.bincount(logits.argmax(1), minlength=n_heads)
            for matrices, tasks in tuning:
                for j in range(t + 1):
                    matrices.record(t, j, tasks.evaluate(net, j, head_of))
        return head_counts
