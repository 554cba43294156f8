"""Images a phase trains on, where they live (device tensor or memory-mapped host array) and how a batch
reaches the device: gathered by device indices in memory, or read on the host into pinned staging buffers
while the device trains on the previous batch."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


class ImageSource:
    """A uint8 image array, either as a tensor on the training device or memory-mapped on the host."""

    def __init__(self, array: np.ndarray, device: torch.device, mapped: bool):
        self.mapped = mapped
        self.device = device
        self.array = array if mapped else torch.from_numpy(np.ascontiguousarray(array)).to(device)

    def take(self, rows: np.ndarray) -> torch.Tensor:
        if self.mapped:
            out = np.empty((len(rows), *self.array.shape[1:]), dtype=np.uint8)
            self.read_into(rows, out)
            return torch.from_numpy(out).to(self.device)
        return self.array[torch.as_tensor(rows, device=self.device)]

    def read_into(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Memory-mapped rows into a host array, read in sorted order (sequential on disk)."""
        order = np.argsort(rows)
        out[order] = self.array[rows[order]]


class HostStaging:
    """A ring of host buffers for memory-mapped batches: pinned on CUDA, so the copy to the device is
    asynchronous; a buffer is reused only after its previous copy has finished (a CUDA event)."""

    def __init__(self, shape: tuple, device: torch.device, slots: int = 3):
        pin = device.type == "cuda"
        self.device = device
        self.buffers = [torch.empty(shape, dtype=torch.uint8, pin_memory=pin) for _ in range(slots)]
        self.events: list = [None] * slots
        self.turn = 0

    def acquire(self) -> int:
        slot = self.turn % len(self.buffers)
        self.turn += 1
        if self.events[slot] is not None:
            self.events[slot].synchronize()  # waits for that buffer's copy only, issued batches ago
        return slot

    def send(self, slot: int, n: int) -> torch.Tensor:
        if self.device.type != "cuda":
            return self.buffers[slot][:n].clone()  # `.to` would alias the buffer the reader refills
        images = self.buffers[slot][:n].to(self.device, non_blocking=True)
        self.events[slot] = torch.cuda.Event()
        self.events[slot].record()
        return images


class Pool:
    """Images one phase trains on: real samples first, then dream samples, with head labels.

    In memory, the pool is materialised on the device once and gathered with device indices; a
    memory-mapped dataset is gathered per batch on the host instead.
    """

    def __init__(self, parts: list[tuple[ImageSource, np.ndarray, np.ndarray, np.ndarray]],
                 device: torch.device):
        # parts: (source, rows into the source, head labels, sample ids); the first part holds real samples.
        self.parts = parts
        self.device = device
        self.n_real = len(parts[0][1]) if parts else 0
        self.labels = torch.as_tensor(np.concatenate([p[2] for p in parts]), device=device)
        self.sample_ids = torch.as_tensor(np.concatenate([p[3] for p in parts]), device=device)
        self.mapped = any(p[0].mapped for p in parts)
        self.images = None if self.mapped else torch.cat([p[0].take(p[1]) for p in parts]) if parts else None
        self._host: HostStaging | None = None  # staging buffers of a memory-mapped pool, made on first use

    def __len__(self) -> int:
        return len(self.labels)

    def gather(self, rows_host: np.ndarray, rows_device: torch.Tensor):
        if not self.mapped:
            return self.images[rows_device], self.labels[rows_device], self.sample_ids[rows_device]
        staging = self._staging(len(rows_host))
        slot = staging.acquire()
        self._read_host(rows_host, staging.buffers[slot].numpy())
        return staging.send(slot, len(rows_host)), self.labels[rows_device], self.sample_ids[rows_device]

    def batches(self, host_rows: list[np.ndarray], device_rows: list[torch.Tensor]):
        """(images, labels, sample ids) of each planned batch. Memory-mapped on a GPU: the next batch is read
        from disk into pinned memory by a background thread while the GPU trains on the current one."""
        if not self.mapped:
            for rows in device_rows:
                yield self.images[rows], self.labels[rows], self.sample_ids[rows]
            return
        if self.device.type != "cuda":  # nothing to overlap with on the host: read each batch in turn
            for rows, rows_dev in zip(host_rows, device_rows):
                yield self.gather(rows, rows_dev)
            return
        staging = self._staging(max((len(r) for r in host_rows), default=0))

        def read(rows: np.ndarray) -> int:
            slot = staging.acquire()
            self._read_host(rows, staging.buffers[slot].numpy())
            return slot

        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(read, host_rows[0]) if host_rows else None
            for i, (rows, rows_dev) in enumerate(zip(host_rows, device_rows)):
                slot = pending.result()
                if i + 1 < len(host_rows):
                    pending = reader.submit(read, host_rows[i + 1])
                yield staging.send(slot, len(rows)), self.labels[rows_dev], self.sample_ids[rows_dev]

    def _staging(self, batch: int) -> HostStaging:
        shape = (batch, *self.parts[0][0].array.shape[1:])
        if self._host is None or self._host.buffers[0].shape[0] < batch:
            self._host = HostStaging(shape, self.device)
        return self._host

    def _read_host(self, rows_host: np.ndarray, out: np.ndarray) -> None:
        offsets = np.cumsum([0] + [len(part[1]) for part in self.parts])
        part_of = np.searchsorted(offsets, rows_host, side="right") - 1
        for k, (source, src_rows, _, _) in enumerate(self.parts):
            sel = np.flatnonzero(part_of == k)
            if len(sel):
                rows = src_rows[rows_host[sel] - offsets[k]]
                if source.mapped:
                    part = np.empty((len(sel), *out.shape[1:]), dtype=np.uint8)
                    source.read_into(rows, part)
                    out[sel] = part
                else:  # an in-memory part (e.g. noise dreams) beside a memory-mapped one
                    out[sel] = source.take(rows).cpu().numpy()
