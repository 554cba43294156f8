"""One WSCL run: the per-task loop of spec §2, with a checkpoint after every finished task.

Per task t: head assignment (t > 0) -> pre-training evaluation -> wake (with the freezing trial in
epoch 0) -> sleep (NREM, plasticity, STM->LTM merge, staged REM) -> evaluation of all seen tasks.
Every random draw of task t comes from generators seeded by (seed, t), so a run resumed from the
checkpoint of task t-1 continues exactly as an uninterrupted one.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from . import __version__
from . import data as data_mod
from . import scenario as scenario_mod
from .augment import Preprocess
from .config import ConfigError, fingerprint
from .runtime import apply_determinism, resolve_runtime
from .evaluation import accuracies, logits_of
from .freezing import HeldOut, adopt, run_trial
from .heads import ASSIGNERS, HeadBook, bind_dreams, count_matrix
from .learners import Learner, build_learner
from .memory import ShortTermMemory
from .metrics import summary, to_json_matrix
from .nrem import merge_stm_into_ltm, replay_stm_ltm
from .plasticity import Importance, apply_plasticity
from .rem import DreamSet, dream_part, noise_images, run_staged_rem
from .scenario import ImageSource, Pool
from .wake import plan_epoch, real_rows_in_order, run_epoch

PHASES = ("assignment", "wake", "freezing_trial", "nrem", "rem", "eval")
CHECKPOINT = "checkpoint.pt"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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


def atomic_torch_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Run:
    def __init__(self, cfg: dict, out_dir: str | Path, quiet: bool = False, log=print, on_task_end=None):
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.runtime = resolve_runtime(cfg)
        self.device = self.runtime.device
        apply_determinism(self.runtime)
        self.quiet = quiet or not cfg["runtime"]["progress"]
        self.log = log
        self.on_task_end = on_task_end  # called with (metrics so far, task) after each task's checkpoint
        self.wscl = cfg["wscl"]
        self.reference = cfg["fidelity"] == "reference"
        torch.manual_seed(cfg["seed"])
        self.dataset = data_mod.from_config(cfg)
        sc = cfg["scenario"]
        held = sc["hold_out"]  # False for plain baselines [code]
        self.scenario = scenario_mod.build(self.dataset, sc["n_tasks"], sc["classes_per_task"],
                                           sc["val_per_task"] if held else 0,
                                           sc["freeze_buffer_per_task"] if held else 0,
                                           np.random.default_rng([cfg["seed"], 1]), sc["train_per_class"],
                                           sc["test_per_class"], reference=self.reference)
        mapped = self.dataset.memory_mapped
        self.train_source = ImageSource(self.dataset.train_x, self.device, mapped)
        self.test_source = ImageSource(self.dataset.test_x, self.device, mapped)
        self.train_y = np.asarray(self.dataset.train_y)
        self.test_y = np.asarray(self.dataset.test_y)
        augment = self.dataset.augment if sc["augment"] == "auto" else sc["augment"]
        mean, std = self.dataset.normalisation()
        self.preprocess = Preprocess(mean, std, augment, self.device, self.runtime.channels_last)
        n_heads = self.scenario.n_heads
        self.dreams = self._dream_set(np.random.default_rng([cfg["seed"], 2]))
        self.book = HeadBook(self.scenario.n_tasks * sc["classes_per_task"], n_heads,
                             bind_dreams(n_heads, self.dreams.n_classes, np.random.default_rng([cfg["seed"], 3])))
        self.learner = build_learner(cfg, n_heads, self.dataset.image_shape, self.preprocess, self.device,
                                     bf16=self.runtime.bf16)
        T = self.scenario.n_tasks
        self.R = {"class_il": np.full((T, T), np.nan), "task_il": np.full((T, T), np.nan)}
        self.random_init = {"class_il": np.full(T, np.nan), "task_il": np.full(T, np.nan)}
        self.random_logits = self._test_logits()
        self.timings = {p: 0.0 for p in PHASES}
        self.wake_images = 0
        self.wake_steps = {"plain": 0, "replay": 0}  # wake steps without / with a replay minibatch
        self.history: list[dict] = []
        self.next_task = 0

    # -- setup -----------------------------------------------------------------------------------
    def _dream_set(self, rng: np.random.Generator) -> DreamSet:
        source = self.wscl["rem"]["source"]
        mapped = self.dataset.memory_mapped
        if source == "aux":
            if len(self.dataset.dream_classes) == 0:
                raise ConfigError(f"wscl.rem.source=aux but dataset {self.dataset.name!r} has no dream set; "
                                  "use source noise or none")
            labels = np.asarray(self.dataset.dream_y)
            keep = scenario_mod.subsample_per_class(labels, np.arange(len(self.dataset.dream_classes)),
                                                    self.wscl["rem"]["dream_per_class"], rng)
            labels = np.where(np.isin(np.arange(len(labels)), keep), labels, -1)  # -1: never dreamt of
            return DreamSet(ImageSource(self.dataset.dream_x, self.device, mapped), labels,
                            len(self.dataset.dream_classes))
        if source == "noise":
            images, labels = noise_images(self.scenario.n_heads, self.wscl["rem"]["noise_per_class"],
                                          self.dataset.image_shape, rng)
            return DreamSet(ImageSource(images, self.device, False), labels, self.scenario.n_heads)
        return DreamSet(None, np.zeros(0, np.int64), 0)

    def _test_logits(self) -> list[torch.Tensor]:
        """Logits of the randomly initialised network on every task's test set (for FWT's b_j)."""
        bs = self.cfg["runtime"]["eval_batch_size"]
        return [logits_of(self.learner.net, self.test_source, rows, self.preprocess, bs).cpu()
                for rows in self.scenario.test_idx]

    # -- phases ----------------------------------------------------------------------------------
    def task_pool(self, t: int) -> Pool:
        rows = self.scenario.train_idx[t]
        parts = [(self.train_source, rows, self.book.heads_of(self.train_y[rows]), rows)]
        rem = self.wscl["rem"]
        if rem["source"] != "none" and rem["schedule"] == "interleaved":
            part = dream_part(self.dreams, self.book)
            if part is not None:
                parts.append(part)
        return Pool(parts, self.device)

    def assign_heads(self, t: int, rng: np.random.Generator, gen_seed: int) -> np.ndarray:
        classes = self.scenario.task_classes(t)
        if self.cfg["scenario"]["head_assignment"] == "class_order":
            heads = classes.copy()  # [code] plain baselines: head h is class h
        elif t == 0:
            heads = np.arange(len(classes))
        else:
            rows = self.scenario.train_idx[t]
            # [code, spec §2b.3] the authors assign heads from augmented training images.
            generator = torch.Generator(device=self.device).manual_seed(gen_seed) if self.reference else None
            logits = logits_of(self.learner.net, self.train_source, rows, self.preprocess,
                               self.cfg["runtime"]["eval_batch_size"], generator)
            predicted = logits.argmax(1).cpu().numpy()
            counts = count_matrix(predicted, self.train_y[rows] - classes[0], len(classes), self.book.free_heads)
            heads = ASSIGNERS[self.cfg["scenario"]["head_assignment"]](counts)
        self.book.assign(classes, heads)
        return heads

    def evaluate(self, upto: int) -> dict[int, tuple[float, float]]:
        bs = self.cfg["runtime"]["eval_batch_size"]
        results = {}
        for j in range(upto + 1):
            rows = self.scenario.test_idx[j]
            logits = logits_of(self.learner.net, self.test_source, rows, self.preprocess, bs)
            results[j] = self._accuracies(logits, j)
        return results

    def _accuracies(self, logits: torch.Tensor, task: int, class_order_heads: bool = False) -> tuple[float, float]:
        rows = self.scenario.test_idx[task]
        head_of = (lambda classes: classes) if class_order_heads else self.book.heads_of
        target = torch.as_tensor(head_of(self.test_y[rows]), device=logits.device)
        task_heads = torch.as_tensor(head_of(self.scenario.task_classes(task)), device=logits.device)
        return accuracies(logits, target, task_heads)

    def held_out(self, rows: np.ndarray) -> HeldOut:
        return HeldOut(rows, torch.as_tensor(self.book.heads_of(self.train_y[rows]), device=self.device))

    def wake(self, t: int, pool: Pool, rng: np.random.Generator, gen_seed: int, stm: ShortTermMemory,
             progress) -> dict:
        tr, fr = self.cfg["training"], self.wscl["freezing"]
        generator = torch.Generator(device=self.device).manual_seed(gen_seed)
        info = {"freezing_scores": None}
        for epoch in range(tr["epochs"]):
            plan = plan_epoch(self.learner, pool, tr["batch_size"], tr["replay_batch_size"], rng)
            where = f"task {t}, epoch {epoch}"
            trial = epoch == 0 and t > 0 and fr["enabled"]
            progress.set_description(f"task {t + 1}/{self.scenario.n_tasks} "
                                     f"{'freezing trial' if trial else 'wake'} epoch {epoch + 1}/{tr['epochs']}")
            if epoch == 0 and stm.size:
                stm.observe(real_rows_in_order(plan, pool.n_real), rng)
            if trial:
                with timed(self.timings, "freezing_trial", self.device):
                    result = run_trial(self.learner, pool, plan, gen_seed + 7919, self.train_source,
                                       self.held_out(self.scenario.val_idx[t]),
                                       self.held_out(self.scenario.freeze_idx[t - 1]), fr["mode"], self.reference,
                                       tr["batch_size"] if self.reference else self.cfg["runtime"]["eval_batch_size"],
                                       self.cfg["runtime"]["nan_check_every"], where, progress)
                    self.learner = adopt(self.learner, result, self.reference)
                info["freezing_scores"] = dict(zip(map(str, result.depths), result.scores))
                continue
            replaying = sum(bool(step.replay) for step in plan.steps)
            self.wake_steps["replay"] += replaying
            self.wake_steps["plain"] += len(plan.steps) - replaying
            with timed(self.timings, "wake", self.device):
                self.wake_images += run_epoch(self.learner, pool, plan, generator,
                                              self.cfg["runtime"]["nan_check_every"], where, progress)
        return info

    def sleep(self, t: int, pool: Pool, rng: np.random.Generator, gen_seed: int, stm: ShortTermMemory) -> dict:
        nrem, plast, rem = self.wscl["nrem"], self.wscl["plasticity"], self.wscl["rem"]
        tr = self.cfg["training"]
        generator = torch.Generator(device=self.device).manual_seed(gen_seed + 104729)
        info = {}
        seen = np.concatenate([self.book.heads_of(self.scenario.task_classes(j)) for j in range(t + 1)])
        seen_heads = torch.zeros(self.scenario.n_heads, dtype=torch.bool, device=self.device)
        seen_heads[torch.as_tensor(seen, device=self.device)] = True
        with timed(self.timings, "nrem", self.device):
            importance = Importance(self.learner.net) if plast["enabled"] else None
            if nrem["enabled"] or plast["enabled"]:
                epochs = nrem["epochs"] if nrem["enabled"] else 1
                fraction = 1.0 / (t + 1) if nrem["stm_fraction"] == "auto" else nrem["stm_fraction"]
                replay_stm_ltm(self.learner, pool, stm, seen_heads, epochs, tr["batch_size"], fraction,
                               rng, generator, importance, update=nrem["enabled"])
            if importance is not None and len(stm):
                report = apply_plasticity(importance, plast["strengthen_frac"], plast["strengthen"],
                                          plast["weaken_frac"], plast["weaken"])
                info["plasticity_weights_scaled"] = sum(r["strengthened"] + r["weakened"] for r in report.values())
            merge_stm_into_ltm(self.learner, pool, stm, rng)
        if rem["source"] != "none" and rem["schedule"] == "staged" and rem["epochs"]:
            part = dream_part(self.dreams, self.book)
            if part is not None:
                with timed(self.timings, "rem", self.device):
                    free = torch.as_tensor(self.book.free_heads, device=self.device)
                    run_staged_rem(self.learner, Pool([part], self.device), free, rem["epochs"], tr["batch_size"],
                                   tr["replay_batch_size"], rng, generator)
        return info

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> dict:
        self._maybe_resume()
        T = self.scenario.n_tasks
        for t in range(self.next_task, T):
            rng, gen_seed = seeds_for(self.cfg["seed"], t)
            self.learner.task = t
            record = {"task": t}
            with timed(self.timings, "assignment", self.device):
                heads = self.assign_heads(t, rng, gen_seed)
            record["heads"] = heads.tolist()
            record["dream_binding"] = {str(h): d for h, d in self.book.dreaming_heads()}
            # [code] the authors score the random network with heads in class order; [ours] with the heads
            # task t is assigned, the same heads its later accuracies use.
            rand_cil, rand_til = self._accuracies(self.random_logits[t], t, class_order_heads=self.reference)
            self.random_init["class_il"][t], self.random_init["task_il"][t] = rand_cil, rand_til
            if t > 0:
                with timed(self.timings, "eval", self.device):
                    pre = self._accuracies(logits_of(self.learner.net, self.test_source, self.scenario.test_idx[t],
                                                     self.preprocess, self.cfg["runtime"]["eval_batch_size"]), t)
                self.R["class_il"][t - 1, t], self.R["task_il"][t - 1, t] = pre
            pool = self.task_pool(t)
            record["wake_pool"] = {"real": pool.n_real, "dream": len(pool) - pool.n_real}
            stm = ShortTermMemory(self.wscl["stm"]["size"] if (self.wscl["nrem"]["enabled"]
                                                                or self.wscl["plasticity"]["enabled"]) else 0)
            progress = tqdm(total=None, desc=f"task {t + 1}/{T}", unit="step", disable=self.quiet, leave=False)
            record.update(self.wake(t, pool, rng, gen_seed, stm, progress))
            progress.set_description(f"task {t + 1}/{T} sleep (NREM, plasticity, REM)")
            record.update(self.sleep(t, pool, rng, gen_seed, stm))
            progress.close()
            with timed(self.timings, "eval", self.device):
                for j, (cil, til) in self.evaluate(t).items():
                    self.R["class_il"][t, j], self.R["task_il"][t, j] = cil, til
            record["frozen_blocks"] = self.learner.frozen_blocks
            record["avg_acc_class_il"] = float(np.mean(self.R["class_il"][t, : t + 1]))
            record["avg_acc_task_il"] = float(np.mean(self.R["task_il"][t, : t + 1]))
            self.history.append(record)
            self.next_task = t + 1
            self._checkpoint()
            if self.on_task_end is not None:
                self.on_task_end(self.metrics(), t)
            if not self.quiet:
                self.log(f"task {t + 1}/{T}: Class-IL {record['avg_acc_class_il']:.2f}  "
                         f"Task-IL {record['avg_acc_task_il']:.2f}  frozen blocks {record['frozen_blocks']}")
        metrics = self.metrics()
        atomic_write_text(self.out / "resolved_config.yaml", yaml.safe_dump(self.cfg, sort_keys=False))
        atomic_write_text(self.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        return metrics

    # -- checkpoint ------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        state = {"fingerprint": fingerprint(self.cfg, self.runtime.describe()), "next_task": self.next_task,
                 "learner": self.learner.state_dict(), "book": self.book.state_dict(),
                 "R": self.R, "random_init": self.random_init, "timings": self.timings,
                 "wake_images": self.wake_images, "wake_steps": self.wake_steps, "history": self.history}
        atomic_torch_save(state, self.out / CHECKPOINT)

    def _maybe_resume(self) -> None:
        path = self.out / CHECKPOINT
        if not path.exists():
            return
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state["fingerprint"] != fingerprint(self.cfg, self.runtime.describe()):
            self.log(f"{path}: checkpoint of a different configuration; starting this run from task 1")
            return
        self.learner.load_state_dict(state["learner"])
        self.book.load_state_dict(state["book"])
        self.R, self.random_init = state["R"], state["random_init"]
        self.timings, self.wake_images = state["timings"], state["wake_images"]
        self.wake_steps = state["wake_steps"]
        self.history, self.next_task = state["history"], state["next_task"]
        self.resumed_from = self.next_task
        self.log(f"resuming {self.out} after task {self.next_task} of {self.scenario.n_tasks}")

    # -- results ---------------------------------------------------------------------------------
    def metrics(self) -> dict:
        out = {"config": self.cfg, "fidelity": self.cfg["fidelity"], "seed": self.cfg["seed"],
               "dataset": self.dataset.name, "method": self.cfg["training"]["method"],
               "preset": self.cfg["preset"], "device": str(self.device), "runtime": self.runtime.describe(),
               "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
               else platform.processor() or platform.machine(),
               "wscl_version": __version__, "git_commit": git_commit(), "torch_version": torch.__version__,
               "dataset_checksums_verified": bool(self.dataset.checksums_verified),
               "dataset_sha256": self.dataset.sha256,  # content of the prepared data; None if generated
               "forgetting_definition": "incl_pretraining [code]" if self.reference else "trained_only [ours]"}
        for setting in ("class_il", "task_il"):
            out[setting] = {"accuracy_matrix": to_json_matrix(self.R[setting]),
                            "random_init_accuracy": [round(float(v), 6) for v in self.random_init[setting]],
                            **summary(self.R[setting], self.random_init[setting], self.reference)}
        out["frozen_blocks_per_task"] = [h["frozen_blocks"] for h in self.history]
        out["frozen_block_names_per_task"] = [self.learner.net.block_names()[: h["frozen_blocks"]]
                                              for h in self.history]
        out["tasks"] = self.history
        out["wall_seconds"] = {k: round(v, 4) for k, v in self.timings.items()}
        wake_s = self.timings["wake"]
        out["wake_steps"] = dict(self.wake_steps)
        out["train_images_per_second"] = round(self.wake_images / wake_s, 2) if wake_s else None
        return out


def train(cfg: dict, out_dir: str | Path, quiet: bool = False, on_task_end=None) -> dict:
    return Run(cfg, out_dir, quiet=quiet, on_task_end=on_task_end).run()
