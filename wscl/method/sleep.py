"""Sleep after a task: NREM (replay, plasticity, the STM->LTM merge; `nrem.py`), then the staged REM stage
when there is one (`rem.py`) [paper]; with interleaved dreaming [code], REM happens inside wake instead."""
from __future__ import annotations

import numpy as np
import torch

from wscl.data.pool import Pool
from wscl.method import nrem, rem
from wscl.method.memory import ShortTermMemory
from wscl.method.state import RunState
from wscl.settings.runtime import timed


def sleep_phase(task: int, state: RunState, pool: Pool, stm: ShortTermMemory, dreams: rem.DreamSet, wscl: dict,
                training: dict, rng: np.random.Generator, task_seed: int, dynamics: list[dict]) -> dict:
    """The sleep after task ``task``: NREM (with plasticity and the STM->LTM merge), then staged REM. Both
    draw from the task's host generator ``rng`` and one device generator seeded from ``task_seed``, the
    task's device-generator seed. Every epoch's entry is appended to ``dynamics``. Returns what the task's
    record notes."""
    book, device = state.book, pool.device
    generator = torch.Generator(device=device).manual_seed(task_seed + 104729)
    seen_heads = torch.as_tensor(book.head_taken, device=device)  # the heads of tasks 0..t
    with timed(state.timings, "nrem", device):
        info = nrem.sleep(state.learner, pool, stm, seen_heads, task, wscl, training["batch_size"], rng, generator,
                     dynamics)
    staged = rem.staged_pool(dreams, book, wscl["rem"], device)
    if staged is not None:
        with timed(state.timings, "rem", device):
            free = torch.as_tensor(book.free_heads, device=device)
            rem.run_staged_rem(state.learner, staged, free, wscl["rem"]["epochs"], training["batch_size"],
                               training["replay_batch_size"], rng, generator, dynamics, task)
    return info
