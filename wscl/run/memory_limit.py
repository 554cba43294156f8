"""Running out of memory, reported as one line that names the settings which size the run [ours].

The allocators say it in their own words (torch.OutOfMemoryError on a GPU, a RuntimeError "DefaultCPUAllocator:
can't allocate" on the CPU, numpy's MemoryError while data is generated); none says which setting asked for it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from wscl.core.errors import OutOfMemoryError
from wscl.settings.config import Config

# The settings whose values set how much memory a run needs, in the order a user would look at them.
SIZING = ("model.width", "training.batch_size", "training.replay_batch_size", "training.buffer_size",
          "wscl.stm.size", "runtime.eval_batch_size")
SYNTHETIC_SIZING = ("dataset.synthetic.classes", "dataset.synthetic.train_per_class", "dataset.synthetic.size")
CPU_ALLOCATOR_FAILURES = ("DefaultCPUAllocator: can't allocate", "DefaultCPUAllocator: not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in CPU_ALLOCATOR_FAILURES)


def sizing_settings(cfg: Config) -> str:
    """``key=value`` of every setting that sizes the run, as one comma-separated text."""
    paths = SIZING + (SYNTHETIC_SIZING if cfg.dataset.name == "synthetic" else ())
    values = []
    for path in paths:
        node = cfg
        for key in path.split("."):
            node = getattr(node, key)
        values.append(f"{path}={node}")
    return ", ".join(values)


@contextmanager
def named_out_of_memory(cfg: Config, device: str) -> Iterator[None]:
    """Turn an allocation failure inside the block into ``OutOfMemoryError`` naming the sizing settings."""
    try:
        yield
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise OutOfMemoryError(f"out of memory on {device} ({sizing_settings(cfg)}); lower model.width or a batch "
                               "or memory size, or run on a device with more memory") from None
