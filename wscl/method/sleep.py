"""Sleep after a task: NREM (replay, plasticity, the STM->LTM merge; `nrem.py`), then the staged REM stage
when there is one (`rem.py`) [paper]; with interleaved dreaming [code], REM happens inside wake instead."""
from __future__ import annotations

import torch

from wscl.method import nrem, rem
from wscl.method.memory import ShortTermMemory
from wscl.method.night import Night
from wscl.method.state import RunState
from wscl.settings.config import Config
from wscl.settings.runtime import timed


def sleep_phase(night: Night, state: RunState, stm: ShortTermMemory, dreams: rem.DreamSet, cfg: Config) -> dict:
    """The sleep after task ``night.task``: NREM (with plasticity and the STM->LTM merge), then staged REM.
    Both draw from the task's host generator and the night's device generator. Every epoch's entry is
    appended to ``night.dynamics``. Returns what the task's record notes."""
    book, device, wscl, training = state.book, night.pool.device, cfg.wscl, cfg.training
    seen_heads = torch.as_tensor(book.head_taken, device=device)  # the heads of tasks 0..t
    with timed(state.timings, "nrem", device):
        info = nrem.sleep(night, stm, seen_heads, wscl, training.batch_size)
    staged = rem.staged_pool(dreams, book, wscl.rem, device)
    if staged is not None:
        with timed(state.timings, "rem", device):
            free = torch.as_tensor(book.free_heads, device=device)
            rem.run_staged_rem(night, staged, free, wscl.rem.epochs, training.batch_size,
                               training.replay_batch_size)
    return info
