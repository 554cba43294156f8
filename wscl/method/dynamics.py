"""Training dynamics [ours]: per epoch of every training phase, the mean step loss, the images trained per
second and, on a GPU, the peak device memory.

Phases: ``wake`` (a wake epoch), ``freezing_trial`` (epoch 0 of a task t > 0, one entry per candidate copy),
``nrem`` (an NREM replay epoch; ``importance`` when plasticity measures without NREM training) and ``rem``
(a staged REM epoch). The entries go into the task's record (``tasks[t].dynamics`` of metrics.json) and
to MLflow as step metrics. The losses are the step losses the trainer computes anyway, kept on the device
and read once at the end of the epoch, so recording them changes no number of the run.
"""
from __future__ import annotations

import resource
import sys
import time
from typing import NamedTuple

import torch

LOSS_PHASES = ("wake", "nrem", "rem")  # the phases of the loss-curve figure (the trial's winner joins wake)


class PhaseEpoch(NamedTuple):
    """Which epoch an entry records: its phase, task and epoch, and the freezing trial's candidate copy."""
    phase: str
    task: int
    epoch: int
    copy: int | None = None


class EpochClock:
    """Times one epoch from its creation and, on a GPU, its peak memory (the device's peak is reset here)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.t0 = time.perf_counter()

    def entry(self, which: PhaseEpoch, losses: torch.Tensor, images: int, timed_images: int | None = None) -> dict:
        """The epoch's record; reading the mean loss waits for the device, so the time is the epoch's own.
        ``timed_images``: the images trained since this clock started, when fewer than the epoch's
        ``images`` (an epoch resumed inside: its first part ran in an earlier process)."""
        mean_loss = float(losses.double().mean()) if losses.numel() else None
        seconds = time.perf_counter() - self.t0
        peak = torch.cuda.max_memory_allocated(self.device) / 2 ** 20 if self.device.type == "cuda" else None
        return {"phase": which.phase, "task": which.task, "epoch": which.epoch, "copy": which.copy,
                "steps": int(losses.numel()),
                "images": images, "mean_loss": None if mean_loss is None else round(mean_loss, 6),
                "seconds": round(seconds, 4),
                "images_per_second": round((images if timed_images is None else timed_images) / seconds, 2)
                if seconds > 0 else None,
                "peak_memory_mb": None if peak is None else round(peak, 1)}


def per_phase(entries: list[dict]) -> dict[str, dict]:
    """Per phase: images per second over all its epochs (copies of the trial counted each) and peak memory."""
    out = {}
    for phase in dict.fromkeys(e["phase"] for e in entries):
        mine = [e for e in entries if e["phase"] == phase]
        # the trial's copies share one clock: its seconds count once per epoch, its images once per copy
        seconds = sum({(e["task"], e["epoch"]): e["seconds"] for e in mine}.values())
        images = sum(e["images"] for e in mine)
        peaks = [e["peak_memory_mb"] for e in mine if e["peak_memory_mb"] is not None]
        out[phase] = {"images_per_second": round(images / seconds, 2) if seconds > 0 else None,
                      "peak_memory_mb": max(peaks) if peaks else None}
    return out


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (what a cluster job's ``mem_mb`` must cover)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)  # bytes on macOS, KiB on Linux


def metric_key(entry: dict, what: str) -> str:
    """The MLflow key of one entry's value, e.g. ``dynamics/wake/mean_loss``, ``dynamics/freezing_trial/copy2/..``."""
    copy = "" if entry["copy"] is None else f"/copy{entry['copy']}"
    return f"dynamics/{entry['phase']}{copy}/{what}"


def step_metrics(tasks: list[dict], only_tasks: set[int] | None = None) -> list[tuple[str, float, int]]:
    """(key, value, step) of every entry of ``tasks`` (each task's record), the step counting the epochs of
    that key across the run, so that live and final logging give the same steps."""
    rows, count = [], {}
    for t, record in enumerate(tasks):
        for entry in record.get("dynamics", []):
            for what in ("mean_loss", "images_per_second", "peak_memory_mb"):
                if entry[what] is None:
                    continue
                key = metric_key(entry, what)
                step = count.get(key, 0)
                count[key] = step + 1
                if only_tasks is None or t in only_tasks:
                    rows.append((key, entry[what], step))
    return rows


def loss_curve(tasks: list[dict], phase: str) -> list[float]:
    """The run's mean loss per epoch of ``phase`` in training order. For ``wake``, a task's freezing-trial
    epoch counts as the wake epoch of the copy the run went on with (the one that froze
    ``frozen_blocks`` blocks, in the order of ``freezing_scores``)."""
    curve = []
    for record in tasks:
        entries = record.get("dynamics", [])
        if phase == "wake" and record.get("freezing_scores"):
            winner = list(record["freezing_scores"]).index(str(record["frozen_blocks"]))
            curve += [e["mean_loss"] for e in entries if e["phase"] == "freezing_trial" and e["copy"] == winner]
        curve += [e["mean_loss"] for e in entries if e["phase"] == phase]
    return curve
