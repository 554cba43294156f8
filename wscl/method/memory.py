"""Replay memories: the long-term reservoir (LTM) [code] and the short-term memory (STM) [paper][ours].

The LTM keeps *unaugmented real* samples (augmentation is applied when sampling) in tensors on the
training device. Every random decision (which slot a sample takes, which samples are replayed) is
drawn on the host from a numpy generator when an epoch is planned, so the training loop never waits
for the device to decide anything.
"""
from __future__ import annotations

import numpy as np
import torch


def reservoir_positions(n_new: int, num_seen: int, capacity: int, rng: np.random.Generator) -> np.ndarray:
    """Where each of ``n_new`` stream items goes in a reservoir of ``capacity`` that has seen ``num_seen``
    items (-1: not kept). Items drawn to the same position: the later one wins, as in a sequential
    reservoir, so only the last write to each position is kept."""
    counts = num_seen + np.arange(1, n_new + 1)
    draws = (rng.random(n_new) * counts).astype(np.int64)
    positions = np.where(counts <= capacity, counts - 1, draws)
    positions[positions >= capacity] = -1
    _, last_from_end = np.unique(positions[::-1], return_index=True)
    keep = np.zeros(n_new, dtype=bool)
    keep[n_new - 1 - last_from_end] = True
    positions[~keep] = -1
    return positions


class ReservoirMemory:
    """Reservoir sampling (Vitter's algorithm R) over the stream of real samples, as Mammoth's Buffer.

    Row ``capacity`` is a discard slot: rejected samples (and dream samples) are written there, which
    keeps the write a single ``index_copy_`` with no data-dependent shapes.
    """

    def __init__(self, capacity: int, image_shape, n_heads: int, device, store_logits: bool = False):
        self.capacity = capacity
        self.num_seen = 0
        rows = capacity + 1
        self.x = torch.zeros((rows, *image_shape), dtype=torch.uint8, device=device)
        self.y = torch.zeros(rows, dtype=torch.long, device=device)
        self.sample_id = torch.full((rows,), -1, dtype=torch.long, device=device)
        self.logits = torch.zeros((rows, n_heads), device=device) if store_logits else None

    @property
    def discard_slot(self) -> int:
        return self.capacity

    @property
    def n_stored(self) -> int:
        return min(self.num_seen, self.capacity)

    def is_empty(self) -> bool:
        return self.n_stored == 0

    # -- planning (host) -------------------------------------------------------------------------
    def reservoir_slots(self, is_real: np.ndarray, num_seen: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Slots for one batch, given how many real samples the stream has shown before it.

        Returns the slot of each batch row (discard slot for dreams and rejected samples) and the
        updated stream count. Two samples of one batch drawn to the same slot: the later one wins,
        as in a sequential reservoir.
        """
        slots = np.full(len(is_real), self.discard_slot, dtype=np.int64)
        real_rows = np.flatnonzero(is_real)
        chosen = reservoir_positions(len(real_rows), num_seen, self.capacity, rng)
        slots[real_rows] = np.where(chosen >= 0, chosen, self.discard_slot)
        return slots, num_seen + len(real_rows)

    def replay_indices(self, size: int, num_seen: int, rng: np.random.Generator) -> np.ndarray:
        """Rows to replay: ``size`` distinct stored rows (fewer if fewer are stored)."""
        n = min(num_seen, self.capacity)
        return rng.choice(n, size=min(size, n), replace=False)

    # -- device side -----------------------------------------------------------------------------
    def write(self, slots: torch.Tensor, x: torch.Tensor, y: torch.Tensor, sample_id: torch.Tensor,
              logits: torch.Tensor | None = None) -> None:
        self.x.index_copy_(0, slots, x)
        self.y.index_copy_(0, slots, y)
        self.sample_id.index_copy_(0, slots, sample_id)
        if self.logits is not None and logits is not None:
            self.logits.index_copy_(0, slots, logits.float())

    def stored(self) -> dict[str, torch.Tensor]:
        n = self.n_stored
        return {"x": self.x[:n], "y": self.y[:n], "sample_id": self.sample_id[:n]}

    def replace_contents(self, x: torch.Tensor, y: torch.Tensor, sample_id: torch.Tensor,
                         logits: torch.Tensor | None = None) -> None:
        """Overwrite the stored rows (used by the STM->LTM merge); keeps the stream count. A memory that
        stores logits (DER++) needs them for the new rows too."""
        n = len(y)
        if n > self.capacity:
            raise ValueError(f"{n} samples do not fit a memory of {self.capacity}")
        if (self.logits is None) != (logits is None):
            raise ValueError("logits must be given exactly when the memory stores them")
        self.x[:n], self.y[:n], self.sample_id[:n] = x, y, sample_id
        if logits is not None:
            self.logits[:n] = logits
        # The stream count decides how many rows are valid (n_stored); keep it when the memory stays full.
        self.num_seen = max(self.num_seen, n) if n == self.capacity else n

    def state_dict(self) -> dict:
        state = {"num_seen": self.num_seen, "x": self.x.cpu(), "y": self.y.cpu(), "sample_id": self.sample_id.cpu()}
        if self.logits is not None:
            state["logits"] = self.logits.cpu()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.num_seen = int(state["num_seen"])
        for key in ("x", "y", "sample_id", "logits"):
            if key in state and getattr(self, key) is not None:
                getattr(self, key).copy_(state[key])


class ShortTermMemory:
    """STM [paper]: a reservoir of ``size`` real samples of the current task [ours], kept as indices
    into the task's training pool (the images stay where they are)."""

    def __init__(self, size: int):
        self.size = size
        self.num_seen = 0
        self._slots = np.zeros(size, dtype=np.int64)

    @property
    def indices(self) -> np.ndarray:
        return self._slots[: min(self.num_seen, self.size)]

    def observe(self, pool_indices: np.ndarray, rng: np.random.Generator) -> None:
        positions = reservoir_positions(len(pool_indices), self.num_seen, self.size, rng)
        kept = positions >= 0
        self._slots[positions[kept]] = pool_indices[kept]
        self.num_seen += len(pool_indices)

    def clear(self) -> None:
        self.num_seen = 0

    def state_dict(self) -> dict:
        return {"num_seen": self.num_seen, "slots": self._slots.copy()}

    def load_state_dict(self, state: dict) -> None:
        self.num_seen = int(state["num_seen"])
        self._slots[:] = state["slots"]

    def __len__(self) -> int:
        return len(self.indices)
