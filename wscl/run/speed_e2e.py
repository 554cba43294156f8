"""End-to-end speed (``wscl speed --end-to-end``) [ours]: a whole fixed run against the work its protocol
requires.

Two runs (base ER-ACE and ER-ACE + WSCL as the authors' code runs it, fidelity reference) on synthetic
32x32x3 images, ResNet-18 width 20, 5 tasks x 2 classes, one epoch (``width`` and ``image_size`` set another
network width and image side, e.g. the paper's width 64 at 256x256). Per run: wall time per phase, images
trained per second and peak device memory per phase (``phases``, from the run's metrics.json), and the work
the protocol requires, counted while it runs:

- images trained (forward + backward): every image of every ``Learner.observe`` call, incoming and
  replayed, in every copy of the freezing trial;
- images inferred: every test image of every evaluation (random-init baselines, before and after each
  task), every training image of head assignment, every held-out image a trial copy is scored on.

In the same process, the bare model's training throughput (an ER-ACE replay step: two batch-32
forwards and one backward, SGD) and inference throughput (eval mode at the run's evaluation layout).
Protocol efficiency = (trained / bare training img/s + inferred / bare inference img/s) / wall time of
the run (from building the run to its metrics.json; imports and the device's warm-up excluded, the
warm-up reported apart): 1.0 means the run costs what its required work costs on the bare model.

Per run also the minor page faults (pages the process touched fresh from the kernel); the results say
whether the process's C allocator keeps freed memory for reuse (``allocator``: set by the ``wscl``
command, not by an in-process call).

How close the bare model itself is to the device's limit: its training FLOPs per image (counted by
``torch.utils.flop_counter``) times its images/s, against the device's fp32 matrix-multiply rate measured
in the same process (``hardware_fraction``).

Outside any run: how long a small ``wscl train`` process takes from its last line to its exit, through
the command line's own exit (``cli.run_cli``) and through a plain return from ``cli.main``
(``process_exit_seconds``, the median of three alternating timings each; one with ``--quick``), always at
the default width and image size; ``exit_probe=False`` leaves it out (None).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from wscl.core.safe_io import atomic_write_json
from wscl.method import evaluation, freezing, learners
from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.run import allocator, trainer
from wscl.run.speed import (
    BATCH,
    CLASSES_PER_TASK,
    SIZE,
    WIDTH,
    BareStep,
    ModelShape,
    Workload,
    bare_loop,
    environment,
    synthetic_config,
)
from wscl.settings.config import Config
from wscl.settings.runtime import resolve_runtime, synchronize

TASKS = 5
SIZES = {"full": {"train_per_class": 300, "test_per_class": 200, "dream_per_class": 30},
         "quick": {"train_per_class": 40, "test_per_class": 20, "dream_per_class": 6}}
RUNS = ("base", "authors")


def e2e_config(preset: str, size: str, device: str | dict, width: int = WIDTH, image_size: int = SIZE) -> Config:
    work = Workload(TASKS, SIZES[size], val_per_task=20 if size == "quick" else 100, epochs=1)
    return synthetic_config(preset, device, work, ModelShape(width, image_size), fidelity="reference")


class Work:
    """Images the run trains and infers, counted at the functions that do it."""

    def __init__(self):
        self.trained = 0
        self.inferred = 0

    @contextmanager
    def counting(self):
        """Count while the block runs: every ``Learner.observe`` call (trained) and every batch that
        ``evaluation.infer`` (evaluation, head assignment) or the trial's scoring runs (inferred). The runs
        are ``reference``, which times no evaluation layout (``corrected`` would count those batches too)."""
        observe, infer, scores = learners.Learner.observe, evaluation.infer, freezing.batch_cross_entropies

        def counted_observe(learner, raw, labels, sample_ids, step, generator):
            self.trained += len(raw) + sum(len(r) for r in step.replay)
            return observe(learner, raw, labels, sample_ids, step, generator)

        def counted_infer(net, batches, *args, **kwargs):
            def counted(batches):
                for batch in batches:
                    self.inferred += len(batch)
                    yield batch
            return infer(net, counted(batches), *args, **kwargs)

        def counted_scores(net, scored, *args, **kwargs):
            self.inferred += len(scored.rows)
            return scores(net, scored, *args, **kwargs)

        learners.Learner.observe, evaluation.infer, freezing.batch_cross_entropies = \
            counted_observe, counted_infer, counted_scores
        try:
            yield self
        finally:
            learners.Learner.observe, evaluation.infer, freezing.batch_cross_entropies = observe, infer, scores


def bare_training(device: torch.device, bare: BareStep, steps: int) -> float:
    """Images/s trained by ER-ACE replay steps on the bare model: two batch-32 forwards, one backward, SGD."""
    # bare_loop counts stream images
    return 2 * bare_loop(device, bare, 0, steps)


def replay_step_flops_per_image(n_heads: int, width: int = WIDTH, image_size: int = SIZE) -> float:
    """FLOPs of one bare ER-ACE replay step (two batch-32 forwards, one backward) per image trained, counted
    from the shapes alone (on the meta device: no arithmetic, so 256x256 inputs cost no CPU time)."""
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        net = ResNet18(n_heads, 3, width)
        xs = [torch.randn(BATCH, 3, image_size, image_size) for _ in range(2)]
        y = torch.zeros(BATCH, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        sum(F.cross_entropy(net(x), y) for x in xs).backward()
    return counter.get_total_flops() / (2 * BATCH)


def matmul_tf32(device: torch.device) -> bool:
    """Whether the matmul ceiling uses TF32: on CUDA exactly when cuDNN's convolutions may (its default), so
    that both sides of the hardware fraction use the same arithmetic."""
    return device.type == "cuda" and torch.backends.cudnn.allow_tf32


def matmul_gflops(device: torch.device, n: int, repeats: int) -> float:
    """The device's fp32 matrix-multiply rate (GFLOP/s), best of three timings, TF32 per ``matmul_tf32``:
    the ceiling a convolution network's training can approach."""
    a, b = (torch.randn(n, n, device=device) for _ in range(2))
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32(device)
    try:
        a @ b
        best = float("inf")
        for _ in range(3):
            synchronize(device)
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 * repeats / best / 1e9


def bare_inference(device: torch.device, n_heads: int, layout: evaluation.EvalLayout, batches: int,
                   width: int = WIDTH, image_size: int = SIZE) -> float:
    """Images/s of eval-mode inference on the bare model at ``layout`` (uint8 in, normalised as a run does)."""
    net = ResNet18(n_heads, 3, width).to(device)
    pre = Preprocess((0.5,) * 3, (0.25,) * 3, False, device, layout.channels_last)
    raw = torch.randint(0, 256, (layout.batch_size, 3, image_size, image_size), dtype=torch.uint8, device=device)
    evaluation.infer(net, [raw], pre)
    synchronize(device)
    start = time.perf_counter()
    evaluation.infer(net, [raw] * batches, pre)
    synchronize(device)
    return batches * layout.batch_size / (time.perf_counter() - start)


def measure(preset: str, size: str, device: str | dict, width: int = WIDTH, image_size: int = SIZE) -> dict:
    cfg = e2e_config(preset, size, device, width, image_size)
    quick = size == "quick"
    with tempfile.TemporaryDirectory() as tmp, Work().counting() as work:
        faults, start = minor_page_faults(), time.perf_counter()
        run = trainer.Run(cfg, tmp, quiet=True, log=lambda *_: None)
        metrics = run.run()
        wall, faults = time.perf_counter() - start, minor_page_faults() - faults
    runtime, n_heads = run.runtime, run.scenario.n_heads
    shape = {"width": width, "image_size": image_size}
    bare = BareStep(n_heads, runtime.channels_last, runtime.bf16, ModelShape(width, image_size))
    # best of two: a conservative (lower) efficiency on a noisy machine
    train_rate = max(bare_training(runtime.device, bare, 3 if quick else 30) for _ in range(2))
    infer_rate = max(bare_inference(runtime.device, n_heads, run.eval_layout, 2 if quick else 12, **shape)
                     for _ in range(2))
    train_gflops = train_rate * replay_step_flops_per_image(n_heads, **shape) / 1e9
    phases = {k: round(v, 3) for k, v in metrics["wall_seconds"].items()}
    phases["other"] = round(wall - sum(metrics["wall_seconds"].values()), 3)
    required_s = work.trained / train_rate + work.inferred / infer_rate
    return {"preset": preset, "method": "er_ace", "fidelity": cfg.fidelity, "wall_seconds": round(wall, 3),
            "phase_seconds": phases, "images_trained": work.trained, "images_inferred": work.inferred,
            # per training phase, from the run's metrics.json: images/s (stream images, each trial copy's
            # counted) and peak device memory (MB; None on the CPU)
            "phases": metrics["phases"], "peak_device_memory_mb": metrics["peak_device_memory_mb"],
            "bare_train_images_per_second": round(train_rate, 2),
            "bare_inference_images_per_second": round(infer_rate, 2),
            "bare_train_gflops": round(train_gflops, 2),
            "required_seconds": round(required_s, 3), "protocol_efficiency": round(required_s / wall, 3),
            "eval_layout": run.eval_layout.describe(), "minor_page_faults": faults,
            "class_il_final_avg_acc": metrics["class_il"]["final_avg_acc"], "compile": metrics["compile"]}


def minor_page_faults() -> int:
    """Pages this process has touched for the first time since the kernel gave them (see ``allocator``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def warm_up(device: torch.device, size: str, width: int = WIDTH, image_size: int = SIZE) -> float:
    """Seconds of the process's first work on ``device`` (CUDA context, cuDNN and cuBLAS set-up): paid once
    per training job, reported apart so that the runs measure the protocol, not the process start."""
    start = time.perf_counter()
    bare = BareStep(TASKS * CLASSES_PER_TASK, device.type == "cuda", False, ModelShape(width, image_size))
    bare_training(device, bare, 3 if size == "quick" else 10)
    return time.perf_counter() - start


# Two ways out of a training process: the command line's (run_cli, as `wscl` and `python -m wscl`), and
# main's return alone.
EXITS = {"run_cli": "from wscl.cli import run_cli; run_cli()",
         "main_only": "import sys; from wscl.cli import main; sys.exit(main())"}


def exit_seconds(exit_path: str, device: str | dict) -> float:
    """Seconds from the last line of a small ``wscl train`` process (the quick size) to its exit."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = json.dumps(e2e_config("base", "quick", device).to_dict())
        argv = ["train", "--quiet", "--out", tmp, "--config-json", settings]
        env = dict(os.environ, PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI="")  # no MLflow in the timing
        proc = subprocess.Popen([sys.executable, "-c", EXITS[exit_path], *argv], stdout=subprocess.PIPE,
                                text=True, env=env)
        for _ in proc.stdout:
            last_line = time.perf_counter()
        if proc.wait() != 0:
            raise RuntimeError(f"the exit probe's training ({exit_path}) failed with exit code {proc.returncode}")
        return time.perf_counter() - last_line


def exit_medians(device: str | dict, repeats: int) -> dict:
    """The median of ``repeats`` exit timings per exit path, the paths alternating."""
    times = {path: [] for path in EXITS}
    for _ in range(repeats):
        for path in EXITS:
            times[path].append(exit_seconds(path, device))
    return {path: round(statistics.median(secs), 3) for path, secs in times.items()}


def run_end_to_end(device: str | dict = "auto", out: str | Path = "results/speed_end_to_end.json",
                   size: str = "full", width: int = WIDTH, image_size: int = SIZE, exit_probe: bool = True) -> dict:
    """The measurement at ``size`` (quick or full), network ``width`` and ``image_size`` x ``image_size`` inputs;
    ``exit_probe``: also time the exit of a training process (at the default width and image size)."""
    out = Path(out)
    cfg = e2e_config("base", size, device, width, image_size)
    dev = resolve_runtime(cfg).device
    results = {"setup": {"image": [3, image_size, image_size], "width": width, "tasks": TASKS,
                         "classes_per_task": CLASSES_PER_TASK, "batch": BATCH, "buffer": 200, "epochs": 1,
                         "size": size, "compile": cfg.runtime.compile,
                         "cuda_graphs": cfg.runtime.cuda_graphs, **SIZES[size]},
               **environment(dev), "allocator_retains_freed_memory": allocator.retaining,
               "device_warm_up_seconds": round(warm_up(dev, size, width, image_size), 3), "runs": []}
    n, repeats = (1024, 3) if size == "quick" else (2048, 50 if dev.type == "cuda" else 10)
    results["matmul_gflops"] = round(matmul_gflops(dev, n, repeats), 1)
    results["matmul_tf32"] = matmul_tf32(dev)
    for preset in RUNS:
        r = measure(preset, size, device, width, image_size)
        r["hardware_fraction"] = round(r["bare_train_gflops"] / results["matmul_gflops"], 3)
        results["runs"].append(r)
        atomic_write_json(out, results)  # each run as soon as it is measured: a measurement stopped early keeps it
        phases = ", ".join(f"{k} {v:.1f}" for k, v in r["phase_seconds"].items() if v)
        rates = ", ".join(f"{k} {v['images_per_second']:.0f} img/s" for k, v in r["phases"].items()
                          if v["images_per_second"])
        peak = "" if r["peak_device_memory_mb"] is None else f", peak device memory {r['peak_device_memory_mb']:.0f} MB"
        print(f"{r['preset']:>7} er_ace at width {width}, {image_size}x{image_size} on {results['device']}: "
              f"{r['wall_seconds']:.1f} s ({phases}); training {rates}{peak}; "
              f"trained {r['images_trained']} img at bare {r['bare_train_images_per_second']:.0f} img/s, "
              f"inferred {r['images_inferred']} img at bare {r['bare_inference_images_per_second']:.0f} img/s; "
              f"{r['minor_page_faults']} page faults; "
              f"protocol efficiency {r['protocol_efficiency']:.3f}; bare training at {r['bare_train_gflops']:.0f} "
              f"GFLOP/s = {r['hardware_fraction']:.2f} of the device's fp32 matmul rate "
              f"({results['matmul_gflops']:.0f} GFLOP/s)", flush=True)
    if exit_probe:
        results["process_exit_seconds"] = exit_medians(device, repeats=1 if size == "quick" else 3)
        print("exit of a training process after its last line: " + ", ".join(
            f"{path} {secs:.2f} s" for path, secs in results["process_exit_seconds"].items()), flush=True)
    else:
        results["process_exit_seconds"] = None
        print("exit of a training process: not measured (--no-exit-probe)", flush=True)
    atomic_write_json(out, results)
    print(f"saved {out} (device warm-up before the runs: {results['device_warm_up_seconds']:.1f} s)")
    return results
