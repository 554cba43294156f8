"""The run's checkpoint: its whole state after every finished task, and inside a task when asked (a timer, a
preemption signal), tied to the configuration.

The file holds the fingerprint of the resolved configuration and runtime (``config.fingerprint``),
``RunState.state_dict()`` and, for a checkpoint written inside a task, the ``position`` there (see
``task.MidTask``). A checkpoint of another configuration, or one whose fields differ from
``RunState``'s, is never loaded: the run starts from its first task instead.

Writing keeps the previous checkpoint as ``checkpoint.prev.pt`` (a hard link, no extra space) until the new
one is complete on disk. A checkpoint that cannot be read (truncated, damaged, of the wrong shape) is moved
aside as ``checkpoint.pt.corrupt-<time>`` and the run falls back to the previous one, else to its start.
Every checkpoint is sealed with its SHA-256 (``checkpoint.pt.sha256``): a byte changed on disk without
changing the size reads as damaged too, where torch would load it without a word [ours]. The seal is no
signature: a checkpoint replaced together with it loads, but with ``weights_only=True`` and the allow-list
``SAFE_GLOBALS`` only, so it can hold wrong numbers and never code to run.
"""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import torch

from wscl.core.safe_io import (
    RESUME,
    DamagedFile,
    atomic_torch_save,
    move_seal_with,
    read_verified,
    remove_quietly,
    remove_stale_temps,
    seal_path,
    temp_path,
    translated,
)
from wscl.method.state import RunState

FILE_NAME = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
# What a checkpoint holds besides tensors, dicts, lists, numbers and strings: numpy arrays of these element types
# (the head book, the wake phase's planned draws). ``torch.load(weights_only=True)`` rebuilds nothing else, so a
# checkpoint replaced together with its seal can carry no code to run [ours].
NUMPY_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
               np.float16, np.float32, np.float64)
SAFE_GLOBALS = [np.ndarray, np.dtype, np._core.multiarray._reconstruct,
                *(type(np.dtype(kind)) for kind in NUMPY_TYPES)]


def load_payload(content: bytes, device: torch.device):
    """A checkpoint's payload, unpickling only tensors, plain containers and SAFE_GLOBALS."""
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        return torch.load(io.BytesIO(content), map_location=device, weights_only=True)


def save(state: RunState, path: Path, fingerprint: str, position: dict | None = None) -> None:
    """Write atomically; a full disk or read-only folder raises ``WriteError`` naming ``path`` and leaves the
    checkpoint that was there (and no temporary file)."""
    keep_previous(path)
    atomic_torch_save({"fingerprint": fingerprint, "state": state.state_dict(), "position": position}, path, RESUME,
                      sealed=True)


def keep_previous(path: Path) -> None:
    """Link the current checkpoint (and its digest) as ``checkpoint.prev.pt`` before it is replaced."""
    previous = path.with_name(PREVIOUS)
    # a rename onto another link of the same file does nothing (POSIX): a failed save left them linked
    if not path.exists() or (previous.exists() and os.path.samefile(path, previous)):
        return
    for source, target in ((seal_path(path), seal_path(previous)), (path, previous)):
        if source.exists():
            link_as(source, target)


def link_as(source: Path, target: Path) -> None:
    remove_stale_temps(target)
    link = temp_path(target)
    try:
        os.link(source, link)
        os.replace(link, target)
    except OSError:  # a file system without hard links: the new checkpoint is still written atomically
        remove_quietly(link)


def discard_previous(path: Path) -> None:
    """The run is finished: its last checkpoint is complete, the one before it is not needed."""
    remove_quietly(path.with_name(PREVIOUS))
    remove_quietly(seal_path(path.with_name(PREVIOUS)))


def restore(state: RunState, path: Path, fingerprint: str, device: torch.device, log=print) -> dict | None:
    """Load the newest readable checkpoint of this configuration into ``state``: ``path``, else
    ``checkpoint.prev.pt``. Returns its payload (``position`` is None after a finished task), or None
    (``state`` untouched) when there is none or it belongs to another configuration. Unreadable files are
    moved aside, and every fallback is logged in one line."""
    candidates = [p for p in (path, path.with_name(PREVIOUS)) if p.exists()]
    damaged = []
    for candidate in candidates:
        try:
            saved = load_payload(read_verified(candidate), device)
            if not isinstance(saved, dict) or "state" not in saved:
                raise ValueError("not a checkpoint of this trainer")
        except Exception as exc:  # torch reports a truncated file as a RuntimeError, a damaged one in other ways
            damaged.append(candidate)
            log(f"{candidate} cannot be read ({one_line(exc)}); moved aside to {move_aside(candidate).name}")
            continue
        if saved.get("fingerprint") != fingerprint or set(saved["state"]) != state.field_names():
            log(f"{candidate}: checkpoint of a different configuration; starting this run from task 1")
            return None
        problem = mismatch(saved["state"], state.state_dict())
        if problem:
            damaged.append(candidate)
            log(f"{candidate} does not fit this run ({problem}); moved aside to {move_aside(candidate).name}")
            continue
        state.load_state_dict(saved["state"])
        if damaged:
            log(f"resuming from the previous checkpoint {candidate.name} instead")
        return saved
    if damaged:
        log(f"no readable checkpoint is left in {path.parent}; starting this run from task 1")
    return None


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DamagedFile):
        return exc.problem
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``NAME.corrupt-<YYYYmmdd-HHMMSS>`` so that a rerun does not read it again."""
    target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
    with translated(path, RESUME):
        os.replace(path, target)
        move_seal_with(path, target)
    return target


def mismatch(saved, current, where: str = "state") -> str | None:
    """Where a tensor of ``saved`` differs in shape or type from the same tensor of ``current`` (a loaded
    checkpoint must not fail half-way through filling the run state)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for key in saved.keys() & current.keys():
            found = mismatch(saved[key], current[key], f"{where}.{key}")
            if found:
                return found
    elif isinstance(saved, torch.Tensor) != isinstance(current, torch.Tensor):
        return f"{where} is not a tensor"
    elif isinstance(saved, torch.Tensor) and (saved.shape != current.shape or saved.dtype != current.dtype):
        return f"{where} has shape {tuple(saved.shape)}, expected {tuple(current.shape)}"
    return None


class Schedule:
    """When a run writes its checkpoint (``path``, tied to ``fingerprint``): after every task, at the end of a
    wake epoch when ``every_seconds`` have passed since the last one (0: never), and when stopped."""

    def __init__(self, path: Path, fingerprint: str, every_seconds: float):
        self.path, self.fingerprint, self.every = path, fingerprint, every_seconds
        self.clock = time.monotonic
        self.last = self.clock()

    def save(self, state: RunState, position: dict | None = None) -> None:
        save(state, self.path, self.fingerprint, position)
        self.last = self.clock()

    def due(self) -> bool:
        return 0 < self.every <= self.clock() - self.last

    def restart(self) -> None:
        """Count from now (a run starting or resuming)."""
        self.last = self.clock()
