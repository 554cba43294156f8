"""One WSCL run: the per-task loop of spec §2, with a checkpoint after every finished task.

Per task t: head assignment (t > 0) -> pre-training evaluation -> wake (the freezing trial in place of
epoch 0) -> sleep (NREM, plasticity, STM->LTM merge, staged REM) -> evaluation of all seen tasks.
The phases live in their modules (wake, freezing, nrem, rem, evaluation); ``Run`` sequences them and
keeps what carries over between tasks in one ``RunState``. Every random draw of task t comes from
generators seeded by (seed, t), so a run resumed from the checkpoint of task t-1 continues exactly as
an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
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
from .evaluation import AccuracyMatrices, EvalLayout, TestTasks, logits_of, measure_layouts
from .freezing import HeldOut, TrialSpec, adopt, run_trial, runs_trial
from .heads import HeadBook, assign_task, bind_dreams
from .learners import Learner, build_learner
from .memory import ShortTermMemory
from .metrics import run_metrics
from .runtime import apply_determinism, resolve_runtime
from .scenario import ImageSource, Pool
from .state import RunState
from .wake import plan_epoch, real_rows_in_order, run_epoch


def seeds_for(seed: int, task: int) -> tuple[np.random.Generator, int]:
    """Host generator and device-generator seed for task ``task`` (independent of earlier tasks)."""
    seq = np.random.SeedSequence([seed, task])
    return np.random.default_rng(seq), int(seq.generate_state(1)[0])


@contextmanager
def timed(timings: dict, phase: str, device: torch.device):
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # phase boundaries only: accurate wall time per phase
    timings[phase] = timings.get(phase, 0.0) + time.perf_counter() - start


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Run:
    def __init__(self, cfg: dict, out_dir: str | Path, quiet: bool = False, log=print, on_task_end=None):
        self.cfg, self.out, self.log = cfg, Path(out_dir), log
        self.out.mkdir(parents=True, exist_ok=True)
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
        self.eval_layout = self.choose_eval_layout(ds.image_shape, ds.normalisation())
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
    def run(self) -> dict:
        path, T = self.out / checkpoint.FILE_NAME, self.scenario.n_tasks
        if checkpoint.restore(self.state, path, self.fingerprint, self.device, self.log):
            self.log(f"resuming {self.out} after task {self.state.next_task} of {T}")
        for t in range(self.state.next_task, T):
            record = self.task(t)
            self.state.history.append(record)
            self.state.next_task = t + 1
            checkpoint.save(self.state, path, self.fingerprint)
            if self.on_task_end is not None:
                self.on_task_end(self.metrics(), t)
            if not self.quiet:
                self.log(f"task {t + 1}/{T}: Class-IL {record['avg_acc_class_il']:.2f}  "
                         f"Task-IL {record['avg_acc_task_il']:.2f}  frozen blocks {record['frozen_blocks']}")
        metrics = self.metrics()
        atomic_write_text(self.out / "resolved_config.yaml", yaml.safe_dump(self.cfg, sort_keys=False))
        atomic_write_text(self.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return metrics

    def task(self, t: int) -> dict:
        """Every phase of task t; returns the task's record."""
        state, T = self.state, self.scenario.n_tasks
        rng, gen_seed = seeds_for(self.cfg["seed"], t)
        self.learner.task = t
        with timed(state.timings, "assignment", self.device):
            heads = self.assign_heads(t, gen_seed)
        record = {"task": t, "heads": heads.tolist(),
                  "dream_binding": {str(h): d for h, d in self.book.dreaming_heads()}}
        # [code] the authors score the random network with heads in class order; [ours] with the heads
        # task t is assigned, the same heads its later accuracies use.
        baseline_heads = (lambda classes: classes) if self.reference else self.book.heads_of
        state.accuracy.record_baseline(t, self.tests.accuracies(self.random_logits[t], t, baseline_heads))
        if t > 0:
            with timed(state.timings, "eval", self.device):
                state.accuracy.record(t - 1, t, self.evaluate(t))
        pool = self.task_pool(t)
        record["wake_pool"] = {"real": pool.n_real, "dream": len(pool) - pool.n_real}
        stm = ShortTermMemory(nrem.stm_size(self.wscl))
        progress = tqdm(total=None, desc=f"task {t + 1}/{T}", unit="step", disable=self.quiet, leave=False)
        record.update(self.wake(t, pool, rng, gen_seed, stm, progress))
        progress.set_description(f"task {t + 1}/{T} sleep (NREM, plasticity, REM)")
        record.update(self.sleep(t, pool, rng, gen_seed, stm))
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
        rows = self.scenario.train_idx[t]

        def predict() -> tuple[np.ndarray, np.ndarray]:
            # [code, spec §2b.3] the authors assign heads from augmented training images.
            generator = torch.Generator(device=self.device).manual_seed(gen_seed) if self.reference else None
            logits = logits_of(self.learner.net, self.train_source, rows, self.eval_preprocess,
                               self.eval_layout.batch_size, generator)
            return logits.argmax(1).cpu().numpy(), self.train_y[rows]

        return assign_task(self.book, self.cfg["scenario"]["head_assignment"], self.scenario.task_classes(t), t == 0,
                           predict)

    def task_pool(self, t: int) -> Pool:
        rows = self.scenario.train_idx[t]
        parts = [(self.train_source, rows, self.book.heads_of(self.train_y[rows]), rows)]
        dreams = rem.interleaved_part(self.dreams, self.book, self.wscl["rem"])
        return Pool(parts if dreams is None else parts + [dreams], self.device)

    def wake(self, t: int, pool: Pool, rng: np.random.Generator, gen_seed: int, stm: ShortTermMemory,
             progress) -> dict:
        tr = self.cfg["training"]
        generator = torch.Generator(device=self.device).manual_seed(gen_seed)
        info = {"freezing_scores": None}
        for epoch in range(tr["epochs"]):
            plan = plan_epoch(self.learner, pool, tr["batch_size"], tr["replay_batch_size"], rng)
            trial, where = runs_trial(t, epoch, self.wscl["freezing"]["enabled"]), f"task {t}, epoch {epoch}"
            progress.set_description(f"task {t + 1}/{self.scenario.n_tasks} "
                                     f"{'freezing trial' if trial else 'wake'} epoch {epoch + 1}/{tr['epochs']}")
            if epoch == 0 and stm.size:
                stm.observe(real_rows_in_order(plan, pool.n_real), rng)
            if trial:
                info["freezing_scores"] = self.freezing_trial(t, pool, plan, gen_seed, where, progress)
            else:
                self.wake_epoch(pool, plan, generator, where, progress)
        return info

    def wake_epoch(self, pool: Pool, plan, generator: torch.Generator, where: str, progress) -> None:
        state = self.state
        state.wake_steps["replay"] += plan.replay_steps
        state.wake_steps["plain"] += len(plan.steps) - plan.replay_steps
        with timed(state.timings, "wake", self.device):
            state.wake_images += run_epoch(self.learner, pool, plan, generator, self.cfg["runtime"]["nan_check_every"],
                                           where, progress)

    def freezing_trial(self, t: int, pool: Pool, plan, gen_seed: int, where: str, progress) -> dict[str, float]:
        """Epoch 0 of task t > 0 trains the trial's copies; the run goes on with the winner."""
        rt = self.cfg["runtime"]
        score_bs = self.cfg["training"]["batch_size"] if self.reference else rt["eval_batch_size"]
        spec = TrialSpec(self.train_source, self.held_out(self.scenario.val_idx[t]),
                         self.held_out(self.scenario.freeze_idx[t - 1]), self.wscl["freezing"]["mode"],
                         self.reference, score_bs, gen_seed + 7919, rt["nan_check_every"], where)
        with timed(self.state.timings, "freezing_trial", self.device):
            result = run_trial(self.learner, pool, plan, spec, progress)
            self.state.learner = adopt(self.learner, result, self.reference)
        return dict(zip(map(str, result.depths), result.scores))

    def sleep(self, t: int, pool: Pool, rng: np.random.Generator, gen_seed: int, stm: ShortTermMemory) -> dict:
        tr, state = self.cfg["training"], self.state
        generator = torch.Generator(device=self.device).manual_seed(gen_seed + 104729)
        seen_heads = torch.as_tensor(self.book.head_taken, device=self.device)  # the heads of tasks 0..t
        with timed(state.timings, "nrem", self.device):
            info = nrem.sleep(self.learner, pool, stm, seen_heads, t, self.wscl, tr["batch_size"], rng, generator)
        dreams = rem.staged_pool(self.dreams, self.book, self.wscl["rem"], self.device)
        if dreams is not None:
            with timed(state.timings, "rem", self.device):
                free = torch.as_tensor(self.book.free_heads, device=self.device)
                rem.run_staged_rem(self.learner, dreams, free, self.wscl["rem"]["epochs"], tr["batch_size"],
                                   tr["replay_batch_size"], rng, generator)
        return info

    # -- evaluation and results ------------------------------------------------------------------
    def choose_eval_layout(self, image_shape, normalisation) -> EvalLayout:
        """Memory format and batch size of evaluation and head assignment [ours]. reference: the training
        format and runtime.eval_batch_size, bit-identical to the authors' arithmetic (another format changes
        logits at float level). corrected: the fastest measured here, unless measuring would cost over 5% of
        the run's inference; kept in the run folder, so a resumed run evaluates as the uninterrupted one."""
        bs, cl = self.cfg["runtime"]["eval_batch_size"], self.runtime.channels_last
        if self.reference:
            return EvalLayout(cl, bs, "reference: the training memory format and runtime.eval_batch_size")
        saved = self.out / "eval_layout.json"
        if saved.exists():
            found = json.loads(saved.read_text())
            if found.get("fingerprint") == self.fingerprint:
                return EvalLayout(**found["layout"])
        n_test, T = sum(len(r) for r in self.scenario.test_idx), self.scenario.n_tasks
        # random init + after every task + before each task t > 0; head assignment of t > 0
        required = n_test * (T + 3) / 2 + sum(len(r) for r in self.scenario.train_idx[1:])
        if 2 * 2 * (bs + 2 * bs) > 0.05 * required:  # 2 formats x 2 batch sizes x (warm-up + timed)
            return EvalLayout(cl, bs, "default: too little inference to be worth measuring")
        with timed(self.state.timings, "eval_layout", self.device):
            layout = measure_layouts(self.learner.net, image_shape, self.device, (bs, 2 * bs), *normalisation)
        atomic_write_text(saved, json.dumps({"fingerprint": self.fingerprint, "layout": vars(layout)}))
        return layout

    def held_out(self, rows: np.ndarray) -> HeldOut:
        return HeldOut(rows, torch.as_tensor(self.book.heads_of(self.train_y[rows]), device=self.device))

    def evaluate(self, task: int) -> tuple[float, float]:
        """Class-IL and Task-IL accuracy on task ``task``'s test images now."""
        return self.tests.accuracies(self.tests.logits(self.learner.net, task), task, self.book.heads_of)

    def metrics(self) -> dict:
        metrics = run_metrics(self.cfg, self.runtime, self.dataset, self.state)
        metrics["runtime"].update(self.eval_layout.describe())
        return metrics


def train(cfg: dict, out_dir: str | Path, quiet: bool = False, on_task_end=None) -> dict:
    return Run(cfg, out_dir, quiet=quiet, on_task_end=on_task_end).run()
