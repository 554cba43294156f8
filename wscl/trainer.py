"""One WSCL run: the per-task loop of spec §2, with a checkpoint after every finished task and inside tasks.

Per task t: head assignment (t > 0) -> pre-training evaluation -> wake (the freezing trial in place of
epoch 0) -> sleep (NREM, plasticity, STM->LTM merge, staged REM) -> evaluation of all seen tasks.
The phases live in their modules (wake, freezing, nrem, rem, evaluation); ``Run`` sequences them and
keeps what carries over between tasks in one ``RunState``. Every random draw of task t comes from
generators seeded by (seed, t), so a run resumed from the checkpoint of task t-1 continues exactly as
an uninterrupted one. A checkpoint inside task t (``runtime.checkpoint_every_minutes`` at a wake-epoch
boundary, or a stop request at the next wake step) also holds those generators' states and what the task
has built so far (``MidTask``), so a run resumed from it continues exactly too.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from . import checkpoint, nrem, rem
from . import data as data_mod
from . import scenario as scenario_mod
from .augment import Preprocess
from .config import fingerprint
from .errors import Preempted
from .evaluation import AccuracyMatrices, TestTasks, choose_layout
from .freezing import runs_trial, trial_epoch, trial_spec
from .heads import HeadBook, assign_by_network, bind_dreams
from .learners import Learner, build_learner
from .memory import ShortTermMemory
from .metrics import run_metrics
from .runtime import apply_determinism, resolve_runtime, timed
from .safe_io import RESUME, atomic_write_json, atomic_write_text, translated
from .scenario import ImageSource, Pool
from .state import RunState
from .wake import MidTask, wake_phase


def seeds_for(seed: int, task: int) -> tuple[np.random.Generator, int]:
    """Host generator and device-generator seed for task ``task`` (independent of earlier tasks)."""
    seq = np.random.SeedSequence([seed, task])
    return np.random.default_rng(seq), int(seq.generate_state(1)[0])


class Run:
    def __init__(self, cfg: dict, out_dir: str | Path, quiet: bool = False, log=print, on_task_end=None,
                 stop=None):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        with translated(self.out, RESUME):
            self.out.mkdir(parents=True, exist_ok=True)
        # stop() names a received stop signal (SIGTERM, SIGUSR1) or is None; the CLI installs the handlers
        self.stop = stop or (lambda: None)
        self.checkpoint_every = 60 * cfg["runtime"]["checkpoint_every_minutes"]
        self.clock = time.monotonic
        self.last_checkpoint = self.clock()
        self.runtime = resolve_runtime(cfg)
        self.device = self.runtime.device
        apply_determinism(self.runtime)
        self.quiet = quiet or not cfg["runtime"]["progress"]
        self.on_task_end = on_task_end  # called with (metrics so far, task) after each task's checkpoint
        self.wscl, self.reference = cfg["wscl"], cfg["fidelity"] == "reference"
        self.fingerprint = fingerprint(cfg, self.runtime.describe())
        torch.manual_seed(cfg["seed"])
        self.dataset = ds = data_mod.from_config(cfg)
        self.scenario = scenario_mod.from_config(ds, cfg)
        self.train_source = ImageSource(ds.train_x, self.device, ds.memory_mapped)
        self.train_y, self.test_y = np.asarray(ds.train_y), np.asarray(ds.test_y)
        sc = cfg["scenario"]
        augment = ds.augment if sc["augment"] == "auto" else sc["augment"]
        self.preprocess = Preprocess(*ds.normalisation(), augment, self.device, self.runtime.channels_last)
        self.tests = TestTasks(ImageSource(ds.test_x, self.device, ds.memory_mapped), self.scenario.test_idx,
                               self.test_y, self.scenario.task_classes, self.preprocess,
                               cfg["runtime"]["eval_batch_size"])
        n_heads = self.scenario.n_heads
        self.dreams = rem.dream_set(ds, self.wscl["rem"], n_heads, self.device, np.random.default_rng([cfg["seed"], 2]))
        book = HeadBook(self.scenario.n_tasks * sc["classes_per_task"], n_heads,
                        bind_dreams(n_heads, self.dreams.n_classes, np.random.default_rng([cfg["seed"], 3])))
        learner = build_learner(cfg, n_heads, ds.image_shape, self.preprocess, self.device, bf16=self.runtime.bf16)
        self.state = RunState(learner, book, AccuracyMatrices.empty(self.scenario.n_tasks))
        self.eval_layout = choose_layout(cfg, self.runtime, self.scenario, learner.net, ds.image_shape,
                                         ds.normalisation(), self.out, self.fingerprint, self.state.timings)
        self.eval_preprocess = Preprocess(*ds.normalisation(), augment, self.device, self.eval_layout.channels_last)
        self.tests.preprocess, self.tests.batch_size = self.eval_preprocess, self.eval_layout.batch_size
        # The randomly initialised network's test logits: FWT's baselines b_j.
        with timed(self.state.timings, "eval_random_init", self.device):
            self.random_logits = [self.tests.logits(learner.net, j).cpu() for j in range(self.scenario.n_tasks)]

    @property
    def learner(self) -> Learner:
        return self.state.learner

    @property
    def book(self) -> HeadBook:
        return self.state.book

    # -- the loop --------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out / checkpoint.FILE_NAME

    def run(self) -> dict:
        T = self.scenario.n_tasks
        mid = self.resume()
        self.last_checkpoint = self.clock()
        for t in range(self.state.next_task, T):
            record = self.task(t, mid)
            mid = None
            self.state.history.append(record)
            self.state.next_task = t + 1
            self.save()
            if self.on_task_end is not None:
                self.on_task_end(self.metrics(), t)
            if not self.quiet:
                self.log(f"task {t + 1}/{T}: Class-IL {record['avg_acc_class_il']:.2f}  "
                         f"Task-IL {record['avg_acc_task_il']:.2f}  frozen blocks {record['frozen_blocks']}")
            if t + 1 < T and self.stop():
                raise self.preempted(f"after task {t + 1} of {T}")
        metrics = self.metrics()
        atomic_write_text(self.out / "resolved_config.yaml", yaml.safe_dump(self.cfg, sort_keys=False), RESUME)
        atomic_write_json(self.out / "metrics.json", metrics, RESUME)
        checkpoint.discard_previous(self.checkpoint_path)
        return metrics

    def resume(self) -> MidTask | None:
        """Load the checkpoint, if any; the task under way when it was written inside one."""
        T = self.scenario.n_tasks
        saved = checkpoint.restore(self.state, self.checkpoint_path, self.fingerprint, self.device, self.log)
        if saved is None:
            return None
        if saved.get("position") is None:
            self.log(f"resuming {self.out} after task {self.state.next_task} of {T}")
            return None
        mid = self.start_task(saved["position"]["task"])
        mid.load_state_dict(saved["position"])
        self.log(f"resuming {self.out} inside task {mid.task + 1} of {T} ({mid.where(self.cfg['training']['epochs'])})")
        return mid

    def save(self, mid: MidTask | None = None) -> None:
        checkpoint.save(self.state, self.checkpoint_path, self.fingerprint, None if mid is None else mid.state_dict())
        self.last_checkpoint = self.clock()

    def pause_point(self, mid: MidTask, paused: bool) -> None:
        """Inside a task: a paused wake epoch, or the end of one. Writes a checkpoint when paused, stopped or
        due (``runtime.checkpoint_every_minutes``), and ends the run when paused or stopped."""
        if paused or self.stop() or 0 < self.checkpoint_every <= self.clock() - self.last_checkpoint:
            self.save(mid)
            if paused or self.stop():
                raise self.preempted(f"inside task {mid.task + 1} of {self.scenario.n_tasks} "
                                     f"({mid.where(self.cfg['training']['epochs'])})")

    def preempted(self, where: str) -> Preempted:
        return Preempted(f"stopped by {self.stop()}: checkpoint {self.checkpoint_path} written {where}; {RESUME}")

    def start_task(self, t: int) -> MidTask:
        rng, gen_seed = seeds_for(self.cfg["seed"], t)
        generator = torch.Generator(device=self.device).manual_seed(gen_seed)
        return MidTask(t, {}, ShortTermMemory(nrem.stm_size(self.wscl)), rng, generator)

    def task(self, t: int, mid: MidTask | None = None) -> dict:
        """Every phase of task t (from where ``mid`` stands, if given); returns the task's record."""
        state, T = self.state, self.scenario.n_tasks
        gen_seed = seeds_for(self.cfg["seed"], t)[1]
        self.learner.task = t
        if mid is None:
            mid = self.start_task(t)
            with timed(state.timings, "assignment", self.device):
                heads = self.assign_heads(t, gen_seed)
            mid.record.update({"task": t, "heads": heads.tolist(),
                               "dream_binding": {str(h): d for h, d in self.book.dreaming_heads()}})
            # [code] the authors score the random network with heads in class order; [ours] with the heads
            # task t is assigned, the same heads its later accuracies use.
            baseline_heads = (lambda classes: classes) if self.reference else self.book.heads_of
            state.accuracy.record_baseline(t, self.tests.accuracies(self.random_logits[t], t, baseline_heads))
            if t > 0:
                with timed(state.timings, "eval", self.device):
                    state.accuracy.record(t - 1, t, self.evaluate(t))
        record = mid.record
        pool = self.task_pool(t)
        record["wake_pool"] = {"real": pool.n_real, "dream": len(pool) - pool.n_real}
        record.setdefault("freezing_scores", None)
        progress = tqdm(total=None, desc=f"task {t + 1}/{T}", unit="step", disable=self.quiet, leave=False)
        trial = self.freezing_trial if runs_trial(t, self.wscl["freezing"]["enabled"]) else None
        wake_phase(mid, state, pool, self.cfg["training"], self.cfg["runtime"]["nan_check_every"], trial,
                   self.pause_point, self.stop, progress, f"task {t + 1}/{T}")
        progress.set_description(f"task {t + 1}/{T} sleep (NREM, plasticity, REM)")
        record.update(nrem.sleep_phase(t, state, pool, mid.stm, self.dreams, self.wscl, self.cfg["training"], mid.rng,
                                       gen_seed))
        progress.close()
        with timed(state.timings, "eval", self.device):
            for j in range(t + 1):
                state.accuracy.record(t, j, self.evaluate(j))
        record["frozen_blocks"] = self.learner.frozen_blocks
        record["avg_acc_class_il"] = state.accuracy.average("class_il", t)
        record["avg_acc_task_il"] = state.accuracy.average("task_il", t)
        return record

    # -- phases ----------------------------------------------------------------------------------
    def assign_heads(self, t: int, gen_seed: int) -> np.ndarray:
        augment_seed = gen_seed if self.reference else None  # [code, spec §2b.3] augmented training images
        return assign_by_network(self.book, self.cfg["scenario"]["head_assignment"], self.scenario.task_classes(t),
                                 t == 0, self.learner.net, self.train_source, self.scenario.train_idx[t], self.train_y,
                                 self.eval_preprocess, self.eval_layout.batch_size, augment_seed)

    def task_pool(self, t: int) -> Pool:
        rows = self.scenario.train_idx[t]
        parts = [(self.train_source, rows, self.book.heads_of(self.train_y[rows]), rows)]
        dreams = rem.interleaved_part(self.dreams, self.book, self.wscl["rem"])
        return Pool(parts if dreams is None else parts + [dreams], self.device)

    def freezing_trial(self, pool: Pool, plan, where: str, progress) -> dict[str, float]:
        t = self.learner.task
        spec = trial_spec(self.cfg, self.train_source, self.train_y, self.book, self.scenario, t,
                          seeds_for(self.cfg["seed"], t)[1], where)
        return trial_epoch(self.state, pool, plan, spec, progress)

    # -- evaluation and results ------------------------------------------------------------------
    def evaluate(self, task: int) -> tuple[float, float]:
        """Class-IL and Task-IL accuracy on task ``task``'s test images now."""
        return self.tests.accuracies(self.tests.logits(self.learner.net, task), task, self.book.heads_of)

    def metrics(self) -> dict:
        metrics = run_metrics(self.cfg, self.runtime, self.dataset, self.state)
        metrics["runtime"].update(self.eval_layout.describe())
        return metrics


def train(cfg: dict, out_dir: str | Path, quiet: bool = False, on_task_end=None, stop=None) -> dict:
    return Run(cfg, out_dir, quiet=quiet, on_task_end=on_task_end, stop=stop).run()
