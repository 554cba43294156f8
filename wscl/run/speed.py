"""Speed (``wscl speed``): trainer images/s and its efficiency against a bare training loop.

Fixed setup [ours]: synthetic 32x32x3 images, batch 32, ResNet-18 width 20, 2 tasks x 2 classes, one
epoch per task of ``steps`` steps (``width`` and ``image_size``: another network width and image side).
The bare loop runs forward+backward+SGD on random batches of the same shapes, with one extra forward
pass of the replay minibatch on every step where the trainer replays, in the same process. Efficiency
ratio = trainer images/s / bare-loop images/s.
"""
from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from wscl.core.provenance import cpu_description, device_name
from wscl.core.safe_io import atomic_write_json
from wscl.method.augment import Preprocess
from wscl.method.backbone import ResNet18
from wscl.method.learners import build_learner
from wscl.run.speed_overhead import measure_overhead
from wscl.run.trainer import Run
from wscl.settings.config import Config, resolve
from wscl.settings.runtime import resolve_runtime, synchronize

BATCH, WIDTH, SIZE, CLASSES_PER_TASK, TASKS = 32, 20, 32, 2, 2


class ModelShape(NamedTuple):
    """The measured ResNet-18's width and the side of its square 3-channel input images."""
    width: int = WIDTH
    image_size: int = SIZE


FIXED_SHAPE = ModelShape()  # the fixed setup's: width 20, 32x32 images


class Workload(NamedTuple):
    """What a measured run trains: ``tasks`` tasks of 2 classes (as many dream classes); ``per_class``: the
    synthetic dataset's train/test/dream images per class; ``val_per_task`` held-out images per task;
    ``epochs`` per task."""
    tasks: int
    per_class: dict
    val_per_task: int
    epochs: int


class BareStep(NamedTuple):
    """One step of the bare loop: forward, backward and SGD of a fresh ResNet-18 with ``n_heads`` outputs on a
    random batch of 32, in the run's memory format (``channels_last``) and precision (``bf16``)."""
    n_heads: int
    channels_last: bool
    bf16: bool
    shape: ModelShape = FIXED_SHAPE


def synthetic_config(preset: str, device: str | dict, work: Workload, shape: ModelShape = FIXED_SHAPE,
                     **settings) -> Config:
    """The speed measurements' fixed setup [ours]: synthetic 32x32x3 images, ResNet-18 width 20, ER-ACE with
    batch 32 and a 200-image buffer, training ``work``; ``shape``: another network width or image side;
    ``settings``: further top-level settings. ``device``: a device name, or runtime settings (e.g.
    ``{"device": "cuda", "compile": "true"}``), as every speed measurement takes it."""
    runtime = {"device": device} if isinstance(device, str) else device
    classes = work.tasks * CLASSES_PER_TASK
    return resolve({
        "preset": preset, "seed": 0, **settings,
        "dataset": {"synthetic": {"classes": classes, "dream_classes": classes, "size": shape.image_size,
                                  "channels": 3, **work.per_class}},
        "scenario": {"n_tasks": work.tasks, "classes_per_task": CLASSES_PER_TASK, "val_per_task": work.val_per_task,
                     "freeze_buffer_per_task": 20},
        "model": {"width": shape.width},
        "training": {"method": "er_ace", "epochs": work.epochs, "batch_size": BATCH, "replay_batch_size": BATCH,
                     "buffer_size": 200},
        "runtime": {**runtime, "progress": False},
    })


def speed_config(preset: str, steps: int, device: str, width: int = WIDTH, image_size: int = SIZE) -> Config:
    per_class = {"train_per_class": steps * BATCH // CLASSES_PER_TASK + 20, "test_per_class": 20,
                 "dream_per_class": 50}
    return synthetic_config(preset, device, Workload(TASKS, per_class, val_per_task=20, epochs=2),
                            ModelShape(width, image_size))


def environment(device: torch.device) -> dict:
    """What the figures were measured on."""
    cpu = f"cpu ({cpu_description()}, {platform.machine()}, {torch.get_num_threads()} threads)"
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "device": device_name(device) if device.type == "cuda" else cpu}


def bare_loop(device: torch.device, bare: BareStep, plain_steps: int, replay_steps: int) -> float:
    """Stream images/s of forward+backward+SGD alone (replay steps add the replay batch's forward)."""
    net = ResNet18(bare.n_heads, 3, bare.shape.width).to(device)
    fmt = torch.channels_last if bare.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.03)
    size = bare.shape.image_size
    x = torch.randn(BATCH, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, bare.n_heads, (BATCH,), device=device)

    def step(replay: bool) -> None:
        opt.zero_grad(set_to_none=True)
        # As the learners: the network under autocast, the losses in fp32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bare.bf16):
            logits = [net(x) for _ in range(2 if replay else 1)]
        loss = sum(F.cross_entropy(out.float(), y) for out in logits)
        loss.backward()
        opt.step()

    for _ in range(3):
        step(True)
    synchronize(device)
    start = time.perf_counter()
    for i in range(plain_steps + replay_steps):
        step(i >= plain_steps)
    synchronize(device)
    return (plain_steps + replay_steps) * BATCH / (time.perf_counter() - start)


def measure(preset: str, steps: int, device: str, width: int = WIDTH, image_size: int = SIZE) -> dict:
    cfg = speed_config(preset, steps, device, width, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, tmp, quiet=True, log=lambda *_: None)
        metrics = run.run()
    runtime = run.runtime
    steps = metrics["wake_steps"]  # the bare loop repeats exactly the trainer's wake steps
    # Best of two bare runs: a conservative (lower) efficiency ratio on a noisy machine.
    spec = BareStep(run.scenario.n_heads, runtime.channels_last, runtime.bf16, ModelShape(width, image_size))
    bare = max(bare_loop(runtime.device, spec, steps["plain"], steps["replay"]) for _ in range(2))
    trainer = metrics["train_images_per_second"]
    return {"preset": preset, "method": "er_ace", "trainer_images_per_second": trainer,
            "bare_loop_images_per_second": round(bare, 2), "efficiency_ratio": round(trainer / bare, 3),
            "wall_seconds": metrics["wall_seconds"]}


def overhead(cfg: Config, steps: int) -> dict:
    """Per phase, eager and compiled: host syncs and operators per step, images/s (wscl/run/speed_overhead.py)."""
    runtime = resolve_runtime(cfg)
    compiled = "reduce-overhead" if runtime.device.type == "cuda" and cfg.runtime.cuda_graphs is not False \
        else "default"
    n_heads = cfg.scenario.n_tasks * cfg.scenario.classes_per_task
    shape = (3, cfg.dataset.synthetic.size, cfg.dataset.synthetic.size)
    out = {}
    for name, mode in (("eager", None), ("compiled", compiled)):
        torch.manual_seed(0)
        preprocess = Preprocess([0.5] * 3, [0.25] * 3, True, runtime.device, runtime.channels_last)
        learner = build_learner(cfg, n_heads, shape, preprocess, runtime.device, bf16=runtime.bf16)
        learner.net.compile_mode = mode
        out[name] = {"mode": mode, **measure_overhead(learner, n_heads, BATCH, steps)}
    return out


def run_speed(device: str | dict = "auto", out: str | Path = "results/speed.json", steps: int = 60,
              width: int = WIDTH, image_size: int = SIZE) -> dict:
    """The measurement; its JSON is written after every measurement, so a run stopped early keeps what it measured."""
    out = Path(out)
    cfg = speed_config("base", steps, device, width, image_size)
    results = {"setup": {"image": [3, image_size, image_size], "batch": BATCH, "width": width, "tasks": TASKS,
                         "steps_per_task": steps, "compile": cfg.runtime.compile},
               **environment(resolve_runtime(cfg).device), "runs": []}
    for preset in ("base", "full"):
        r = measure(preset, steps, device, width, image_size)
        results["runs"].append(r)
        atomic_write_json(out, results)
        print(f"{r['preset']:>5} er_ace on {results['device']}: trainer {r['trainer_images_per_second']:.1f} img/s, "
              f"bare loop {r['bare_loop_images_per_second']:.1f} img/s, efficiency ratio {r['efficiency_ratio']:.3f}",
              flush=True)
    results["overhead_per_step"] = overhead(cfg, steps)
    atomic_write_json(out, results)
    for name, phases in results["overhead_per_step"].items():
        print(f"{name:>8} step: " + "; ".join(
            f"{phase} {v['host_syncs_per_step']:g} host syncs, {v['aten_ops_per_step']:g} ops, "
            f"{v['images_per_second']:.0f} img/s" for phase, v in phases.items() if isinstance(v, dict)), flush=True)
    print(f"saved {out}")
    return results
