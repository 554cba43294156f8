"""Overhead per training step [ours]: host synchronisations, operators dispatched and images/s, per phase,
eager and compiled.

Each phase's step is the one the trainer runs (wscl/method/step.py): a wake step of the learner with a
replay batch (the freezing trial's copies run the same step), an NREM step (loss over the seen heads) and a
staged-REM step (dreams over the free heads plus replay). The batches are prepared before timing, as the
trainer's planned epochs prepare them. Under torch.profiler, a step's host synchronisations are the calls
that read a device value on the host (``aten::_local_scalar_dense``, behind ``.item()``, ``bool(tensor)`` and
``.tolist()``) and the device-to-host copies; its operators are the aten operators it dispatches (fewer when
compiled: the fused kernels run inside one graph call).
"""
from __future__ import annotations

import time
from functools import partial

import torch
from torch.profiler import ProfilerActivity, profile

from wscl.method import nrem, rem
from wscl.method.learners import Step
from wscl.method.step import train_step
from wscl.settings.runtime import synchronize

SYNC_OPS = ("aten::_local_scalar_dense", "aten::item")


def phase_steps(learner, batch: int, n_heads: int, generator: torch.Generator) -> dict:
    """One step function per phase, each training ``learner`` on fixed prepared batches of ``batch`` images."""
    device = learner.memory.x.device
    image_shape = learner.memory.x.shape[1:]
    raw = torch.randint(0, 256, (batch, *image_shape), dtype=torch.uint8, device=device)
    labels = torch.randint(0, n_heads, (batch,), device=device)
    memory = learner.memory
    memory.x[:batch], memory.y[:batch], memory.num_seen = raw, labels, batch
    rows = torch.arange(batch, device=device)
    slots = torch.full((batch,), memory.discard_slot, device=device)
    wake_step = Step(0, rows, slots, [torch.randperm(batch, device=device)])
    all_heads = torch.ones(n_heads, dtype=torch.bool, device=device)
    x = learner.preprocess(raw, generator)
    replay = learner.replay_batch(rows, generator)
    return {
        "wake": lambda: learner.observe(raw, labels, rows, wake_step, generator),
        "nrem": lambda: train_step(learner, partial(nrem.seen_heads_loss, learner, x, labels, all_heads))[0],
        "rem": lambda: train_step(learner, partial(rem.dream_loss, learner, x, labels, all_heads, replay))[0],
    }


def count_per_step(step, steps: int) -> dict:
    """Host synchronisations and aten operators per call of ``step``, under the profiler."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        for _ in range(steps):
            step()
    events = prof.events()
    syncs = sum(1 for e in events if e.name in SYNC_OPS or ("Memcpy" in e.name and "DtoH" in e.name))
    ops = sum(1 for e in events if e.name.startswith("aten::"))
    return {"host_syncs_per_step": round(syncs / steps, 3), "aten_ops_per_step": round(ops / steps, 1)}


def images_per_second(step, steps: int, batch: int, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return round(steps * batch / (time.perf_counter() - start), 2)


def measure_overhead(learner, n_heads: int, batch: int, steps: int, warmup: int = 3) -> dict:
    """Per phase: host syncs and operators per step, and images/s, for ``learner`` as it is configured
    (eager, or compiled when its network's ``compile_mode`` is set). Warm-up steps (and compiles) first."""
    generator = torch.Generator(device=learner.memory.x.device).manual_seed(0)
    out = {}
    for phase, step in phase_steps(learner, batch, n_heads, generator).items():
        for _ in range(warmup):
            step()
        out[phase] = {**count_per_step(step, steps),
                      "images_per_second": images_per_second(step, steps, batch, learner.memory.x.device)}
    return out
