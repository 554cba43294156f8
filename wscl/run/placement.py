"""Where a training job runs: every GPU of the machine, each shared by up to K runs [ours]; its Slurm job.

Snakemake gives a local job no GPU of its own (it counts a `gpu` resource, not devices), so each training
job claims a *share* itself before CUDA starts: share k of GPU g is the lock file ``g.k.lock`` in a folder
common to every study of the user on this machine, held with ``flock`` for the life of the process. The
operating system releases the lock when the process ends, however it ends (a job killed with -9 frees its
share at once); a claim never reads or trusts a file's content, so stale files are harmless. Shares are
tried slot by slot across GPUs (slot 0 of every GPU before slot 1 of any), so runs spread over all GPUs
before they pile onto one; when all GPUs x K shares are held (e.g. two studies at once) a job waits for one.

The claimed GPU becomes the process's only visible device (``CUDA_VISIBLE_DEVICES``), so the run computes
on ``cuda`` (= ``cuda:0``) as before and its checkpoint resumes on any share of the same GPU model.
The GPUs shared out: ``CUDA_VISIBLE_DEVICES`` when set (what Slurm grants a job), else every GPU that
``nvidia-smi`` lists.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_DIR_VARIABLE = "WSCL_GPU_LOCK_DIR"
POLL_SECONDS = 1.0


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (indices or UUIDs); [] without any."""
    granted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if granted is not None:
        return [g.strip() for g in granted.split(",")
                if g.strip() and not g.strip().startswith("-") and g.strip() != "NoDevFiles"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(["nvidia-smi", "--query-gpu=uuid", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.stdout.splitlines() if line.strip()] if listed.returncode == 0 else []


def lock_dir() -> Path:
    """One folder per user and machine (not per study), so that two studies share the GPUs fairly."""
    folder = Path(os.environ.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir()) / f"wscl-gpu-shares-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Share:
    gpu: str          # the CUDA_VISIBLE_DEVICES entry of the GPU
    slot: int         # 0 .. runs_per_gpu - 1
    runs_per_gpu: int
    handle: object    # the open, locked file: the share is held while it stays open

    def describe(self) -> dict:
        return {"gpu": self.gpu, "slot": self.slot, "runs_per_gpu": self.runs_per_gpu}

    def release(self) -> None:
        self.handle.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def try_claim(gpus: list[str], runs_per_gpu: int, folder: Path) -> Share | None:
    """The first free share, slot by slot across GPUs; None when every share is held."""
    for slot in range(runs_per_gpu):
        for gpu in gpus:
            handle = open(folder / f"{_safe(gpu)}.{slot}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return Share(gpu, slot, runs_per_gpu, handle)
    return None


def claim(gpus: list[str], runs_per_gpu: int, folder: Path | None = None, log=None) -> Share:
    """Wait for a share of one of ``gpus`` (at most ``runs_per_gpu`` runs per GPU) and hold it."""
    folder = folder or lock_dir()
    announced = False
    while True:
        share = try_claim(gpus, runs_per_gpu, folder)
        if share is not None:
            return share
        if not announced and log:
            log(f"all {len(gpus)} GPU(s) x {runs_per_gpu} shares are held by other runs; waiting for one")
            announced = True
        time.sleep(POLL_SECONDS)


def place_run(cfg: dict, log=lambda msg: print(msg, file=sys.stderr)) -> Share | None:
    """Claim a GPU share for a run whose device is ``auto`` on a machine with GPUs, and make that GPU the only
    one the process sees. None (nothing changed) for a run given a device, or without GPUs."""
    if str(cfg["runtime"]["device"]) != "auto" or os.environ.get("SLURM_JOB_ID"):
        return None  # a Slurm job is granted its GPU (every job sees it as 0): nothing to share with others
    gpus = visible_gpus()
    if not gpus:
        return None
    share = claim(gpus, int(cfg["runtime"]["runs_per_gpu"]), log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = share.gpu  # before CUDA starts: the run's cuda:0 is this GPU
    log(f"GPU share: GPU {share.gpu}, share {share.slot + 1} of {share.runs_per_gpu}")
    return share


def announce(cfg: dict, log=lambda msg: print(msg, file=sys.stderr)) -> None:
    """Say where the job runs: its Slurm job, and whether a granted GPU is usable (else the run uses the CPU)."""
    import torch
    if os.environ.get("SLURM_JOB_ID"):
        log(f"Slurm job {os.environ['SLURM_JOB_ID']} on node {os.environ.get('SLURMD_NODENAME', '?')}")
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if granted and cfg["runtime"]["device"] == "auto" and not torch.cuda.is_available():
        log(f"a GPU was granted (CUDA_VISIBLE_DEVICES={granted}) but CUDA is unavailable: running on the CPU")
