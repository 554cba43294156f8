"""One WSCL run: the per-task loop of docs/method.md §2, with a checkpoint after every finished task and inside tasks.

Per task t: head assignment (t > 0) -> pre-training evaluation -> wake (the freezing trial in place of
epoch 0) -> sleep (NREM, plasticity, STM->LTM merge, staged REM) -> evaluation of all seen tasks.
The phases live in their modules (wake, freezing, heads, nrem, rem, evaluation); ``Run.compose`` builds a
run's parts from its configuration, ``Run`` sequences the phases and keeps what carries over between
tasks in one ``RunState``. Every random draw of task t comes from generators seeded by (seed, t), so a
run resumed from the checkpoint of task t-1 continues exactly as an uninterrupted one. A checkpoint
inside task t (``runtime.checkpoint_every_minutes`` at a wake-epoch boundary, or a stop request at the
next wake step) also holds those generators' states and what the task has built so far (``MidTask``),
so a run resumed from it continues exactly too.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from wscl.core.errors import Preempted
from wscl.core.safe_io import RESUME, atomic_write_json, atomic_write_text, translated
from wscl.data import benchmarks
from wscl.method import nrem, rem, sleep
from wscl.method import scenario as scenario_mod
from wscl.method.augment import Preprocess
from wscl.method.backbone import compile_counts
from wscl.method.evaluation import (
    AccuracyMatrices,
    KeptLayout,
    NetInputs,
    Scoreboard,
    TestTasks,
    choose_layout,
    logits_of,
)
from wscl.method.failures import FailurePolicy, LossChecks, check_collapse
from wscl.method.feed import ImageSource, Pool
from wscl.method.freezing import task_trial
from wscl.method.heads import HeadBook, assign_task, bind_dreams
from wscl.method.learners import Learner, build_learner
from wscl.method.metrics import run_metrics
from wscl.method.night import Night
from wscl.method.state import RunState
from wscl.method.step import check_finite
from wscl.method.task import MidTask, TaskContext, TrainingImages, seeds_for
from wscl.method.wake import wake_phase
from wscl.run import checkpoint, release
from wscl.settings.config import Config, fingerprint
from wscl.settings.runtime import prepare_runtime, timed


@dataclass(frozen=True)
class Process:
    """What the process around a run attaches to it (the CLI installs the handlers)."""
    stop: Callable[[], str | None] = lambda: None  # names a received stop signal (SIGTERM, SIGUSR1), else None
    on_task_end: Callable[[dict, int], None] | None = None  # (metrics so far, task), after each task's checkpoint
    gpu_share: dict | None = None  # the GPU share the job claimed (run/placement.py); None without one


class Run:
    """The task loop of one run, resumable from its checkpoint (written after a task or inside one)."""

    def __init__(self, cfg: Config, out_dir: str | Path, quiet: bool = False, log=print,
                 process: Process | None = None):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.process = process = process or Process()
        with translated(self.out, RESUME):
            self.out.mkdir(parents=True, exist_ok=True)
        self.stop = process.stop
        self.runtime = prepare_runtime(cfg)
        self.device = self.runtime.device
        self.quiet = quiet or not cfg.runtime.progress
        self.wscl, self.reference = cfg.wscl, cfg.fidelity == "reference"
        self.fingerprint = fingerprint(cfg, self.runtime.describe())
        self.checkpoints = checkpoint.Schedule(self.out / checkpoint.FILE_NAME, self.fingerprint,
                                               60 * cfg.runtime.checkpoint_every_minutes)
        # failure warnings go to stderr, like every warning of the CLI, unless the caller routes the log
        self.failures = FailurePolicy(cfg.runtime.on_training_failure, None if log is print else log)
        self.compose()

    def compose(self) -> None:
        """Build the run's parts from its configuration, each random draw from its own seeded generator: data,
        the initial state, how it evaluates (the layout) and the random network's test logits."""
        cfg, device, sc = self.cfg, self.device, self.cfg.scenario
        torch.manual_seed(cfg.seed)
        self.dataset = ds = benchmarks.from_config(cfg)
        self.scenario = scenario_mod.from_config(ds, cfg)
        self.train_source = ImageSource(ds.train_x, device, ds.memory_mapped)
        self.train_y, test_y = np.asarray(ds.train_y), np.asarray(ds.test_y)
        self.images = TrainingImages(self.train_source, self.train_y, self.scenario)
        augment = ds.augment if sc.augment == "auto" else sc.augment
        # the training images' own statistics when the dataset fixes none: once
        self.mean_std = mean_std = ds.normalisation()
        preprocess = Preprocess(*mean_std, augment, device, self.runtime.channels_last, ds.crop_padding)
        n_heads = self.scenario.n_heads
        self.loss_checks = LossChecks.from_config(cfg.runtime, n_heads, self.failures)
        self.dreams = rem.dream_set(ds, cfg.wscl.rem, n_heads, device, np.random.default_rng([cfg.seed, 2]))
        book = HeadBook(self.scenario.n_tasks * sc.classes_per_task, n_heads,
                        bind_dreams(n_heads, self.dreams.n_classes, np.random.default_rng([cfg.seed, 3])))
        learner = build_learner(cfg, n_heads, ds.image_shape, preprocess, device, bf16=self.runtime.bf16)
        learner.net.compile_mode = self.runtime.compile_mode  # copies and checkpoints keep it with the network
        self.compiled_before = compile_counts()
        T = self.scenario.n_tasks
        self.state = RunState(learner, book, AccuracyMatrices.empty(T),
                              tune=AccuracyMatrices.empty(T) if self.scenario.has_tune else None)
        self.eval_layout = layout = choose_layout(cfg, self.runtime, self.scenario, learner.net,
                                                  NetInputs(ds.image_shape, mean_std),
                                                  KeptLayout(self.out, self.fingerprint, self.state.timings))
        test_preprocess = Preprocess(*mean_std, augment, device, layout.channels_last, ds.crop_padding)
        self.tests = TestTasks(ImageSource(ds.test_x, device, ds.memory_mapped), self.scenario.test_idx, test_y,
                               self.scenario.task_classes, test_preprocess, layout.batch_size)
        # The tuning split [ours]: training images never trained on, scored like the test images (no augmentation)
        self.tune = TestTasks(self.train_source, self.scenario.tune_idx, self.train_y, self.scenario.task_classes,
                              test_preprocess, layout.batch_size) if self.scenario.has_tune else None
        boards = [(self.state.accuracy, self.tests)] + ([(self.state.tune, self.tune)] if self.tune else [])
        self.scores = Scoreboard(boards, learner.net, self.state.timings, device)
        self.random_logits = self.scores.random_logits[0]

    @property
    def learner(self) -> Learner:
        return self.state.learner

    @property
    def book(self) -> HeadBook:
        return self.state.book

    def run(self) -> dict:
        T = self.scenario.n_tasks
        mid = self.resume()
        self.checkpoints.restart()
        for t in range(self.state.next_task, T):
            record, mid = self.task(t, mid), None
            record["wall_seconds"] = self.state.task_seconds()
            self.state.history.append(record)
            self.state.next_task = t + 1
            self.checkpoints.save(self.state)
            if self.process.on_task_end is not None:
                self.process.on_task_end(self.metrics(), t)
            if not self.quiet:
                self.log(f"task {t + 1}/{T}: Class-IL {record['avg_acc_class_il']:.2f}  "
                         f"Task-IL {record['avg_acc_task_il']:.2f}  frozen blocks {record['frozen_blocks']}")
            if t + 1 < T and self.stop():
                raise self.preempted(f"after task {t + 1} of {T}")
        metrics = self.metrics()
        self.release()
        resolved = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
        atomic_write_text(self.out / "resolved_config.yaml", resolved, RESUME, sealed=True)
        atomic_write_json(self.out / "metrics.json", metrics, RESUME, sealed=True)
        checkpoint.discard_previous(self.checkpoints.path)
        return metrics

    def release(self) -> None:
        """The final network as a released model (wscl/run/release.py), with the accuracy row it scored."""
        T = self.scenario.n_tasks
        rows = {s: [float(v) for v in self.state.accuracy.R[s][T - 1, :T]] for s in self.state.accuracy.R}
        release.save_model(self.out / release.FILE_NAME, release.ReleasedModel(
            self.cfg, self.learner.net, self.book.class_to_head, self.mean_std, self.dataset.image_shape,
            self.runtime.channels_last, self.eval_layout, rows))

    def resume(self) -> MidTask | None:
        """Load the checkpoint, if any; the task under way when it was written inside one."""
        T = self.scenario.n_tasks
        saved = checkpoint.restore(self.state, self.checkpoints.path, self.fingerprint, self.device, self.log)
        if saved is None:
            return None
        if saved.get("position") is None:
            self.log(f"resuming {self.out} after task {self.state.next_task} of {T}")
            return None
        mid = MidTask.start(saved["position"]["task"], self.cfg.seed, nrem.stm_size(self.wscl), self.device)
        mid.load_state_dict(saved["position"])
        self.log(f"resuming {self.out} inside task {mid.task + 1} of {T} ({mid.where(self.cfg.training.epochs)})")
        return mid

    def pause_point(self, mid: MidTask, paused: bool) -> None:
        """Inside a task: a paused wake epoch, or the end of one. Writes a checkpoint when paused, stopped or
        due (``runtime.checkpoint_every_minutes``), and ends the run when paused or stopped."""
        if paused or self.stop() or self.checkpoints.due():
            self.checkpoints.save(self.state, mid.state_dict())
            if paused or self.stop():
                raise self.preempted(f"inside task {mid.task + 1} of {self.scenario.n_tasks} "
                                     f"({mid.where(self.cfg.training.epochs)})")

    def preempted(self, where: str) -> Preempted:
        return Preempted(f"stopped by {self.stop()}: checkpoint {self.checkpoints.path} written {where}; {RESUME}")

    def task(self, t: int, mid: MidTask | None = None) -> dict:
        """Every phase of task t (from where ``mid`` stands, if given); returns the task's record."""
        state, T = self.state, self.scenario.n_tasks
        gen_seed = seeds_for(self.cfg.seed, t)[1]
        self.learner.task = t
        mid = mid or self.before_training(t, gen_seed)
        self.failures.records = mid.record.setdefault("training_failures", [])
        pool, probe = self.task_pool(t), self.images.probe(t, self.tests.preprocess)
        # The bar is cleared however the task ends (a stop, a NaN): an error message then starts its own line.
        with tqdm(total=None, desc=f"task {t + 1}/{T}", unit="step", disable=self.quiet, leave=False) as progress:
            ctx = TaskContext(mid, state, self.images, pool, self.loss_checks, gen_seed, progress, self.stop,
                              self.pause_point)
            wake_phase(ctx, self.cfg.training, task_trial(ctx, self.cfg))
            check_finite(state.learner, probe, t, "wake")
            ctx.describe("sleep (NREM, plasticity, REM)")
            night = Night(t, state.learner, pool, mid.rng, torch.Generator(device=self.device).manual_seed(
                gen_seed + 104729), self.loss_checks, probe, mid.record["dynamics"])
            mid.record.update(sleep.sleep_phase(night, state, mid.stm, self.dreams, self.cfg))
        self.evaluate_seen(t)
        return {**mid.record, "frozen_blocks": self.learner.frozen_blocks,
                "avg_acc_class_il": state.accuracy.average("class_il", t),
                "avg_acc_task_il": state.accuracy.average("task_il", t)}

    def evaluate_seen(self, t: int) -> None:
        """Accuracy on every task seen after training task t (test images, and the tuning split if any), then
        the collapse check on the test images' predictions."""
        head_counts = self.scores.after_task(t, self.learner.net, self.book.heads_of, self.scenario.n_heads)
        n_classes_seen = (t + 1) * self.cfg.scenario.classes_per_task
        check_collapse(self.failures, head_counts.cpu(), n_classes_seen, self.cfg.runtime.collapse_share, t)

    def before_training(self, t: int, gen_seed: int) -> MidTask:
        """Task t's start: its heads, the random network's baseline on it and, for t > 0, its pre-training
        accuracy (docs/method.md §4); the same on the tuning split, if there is one."""
        mid = MidTask.start(t, self.cfg.seed, nrem.stm_size(self.wscl), self.device)
        with timed(self.state.timings, "assignment", self.device):
            heads = self.assign_heads(t, gen_seed)
        mid.record.update({"task": t, "heads": heads.tolist(),
                           "dream_binding": {str(h): d for h, d in self.book.dreaming_heads()}})
        self.scores.before_task(t, self.learner.net, self.book.heads_of, self.reference)
        return mid

    def assign_heads(self, t: int, gen_seed: int) -> np.ndarray:
        rows = self.scenario.train_idx[t]

        def predict() -> tuple[np.ndarray, np.ndarray]:
            """The current network's head for each of task t's training images, and the image's class."""
            # [code, docs/method.md §2b.3] the authors classify augmented training images
            generator = torch.Generator(device=self.device).manual_seed(gen_seed) if self.reference else None
            logits = logits_of(self.learner.net, self.train_source, rows, self.tests.preprocess,
                               self.tests.batch_size, generator)
            return logits.argmax(1).cpu().numpy(), self.train_y[rows]

        return assign_task(self.book, self.cfg.scenario.head_assignment, self.scenario.task_classes(t), t == 0,
                           predict)

    def task_pool(self, t: int) -> Pool:
        return self.images.pool(t, self.book.heads_of, rem.interleaved_part(self.dreams, self.book, self.wscl.rem))

    def metrics(self) -> dict:
        return {**run_metrics(self.cfg, self.runtime, self.dataset, self.state, self.eval_layout),
                "gpu_share": self.process.gpu_share, "compile": compile_record(self.runtime, self.compiled_before)}


def compile_record(runtime, before: dict) -> dict:
    """Whether the run compiled its training steps, how, and torch.compile's counts during the run (in this
    process: a resumed run counts its last part)."""
    now = compile_counts()
    return {"mode": runtime.compile_mode, **{k: now[k] - before[k] for k in now}}


def train(cfg: Config, out_dir: str | Path, quiet: bool = False, process: Process | None = None) -> dict:
    return Run(cfg, out_dir, quiet=quiet, process=process).run()
