"""Where a training job runs: the GPUs it may use, each shared by up to K runs [ours]; its Slurm job.

Snakemake gives a local job no GPU of its own (it counts a `gpu` resource, not devices), so each training
job claims a *share* itself before CUDA starts: share k of GPU g is the lock file ``<uuid of g>.k.lock`` in a
folder common to every study of the user on this machine, held with ``flock`` for the life of the process. The
operating system releases the lock when the process ends, however it ends (a job killed with -9 frees its
share at once); a claim never reads or trusts a file's content, so stale files are harmless. Shares are
tried slot by slot across GPUs (slot 0 of every GPU before slot 1 of any), so runs spread over all GPUs
before they pile onto one; when all GPUs x K shares are held (e.g. two studies at once) a job waits for one.

Which GPUs: ``CUDA_VISIBLE_DEVICES`` when set (what Slurm grants a job or a job step), else every GPU that
``nvidia-smi`` lists; ``auto`` and ``cuda`` share all of them, ``cuda:N`` only the N-th. Inside a Slurm job
the granted GPUs are shared the same way, one share per process, whoever started it (``srun``, a batch
script, Snakemake). A lock is named by the GPU's UUID, however ``CUDA_VISIBLE_DEVICES`` named the GPU
(index, UUID or a prefix of one), so two studies that name one GPU differently still share it fairly; the
UUIDs come from ``nvidia-smi``, or, without it, from CUDA in a child process (the parent must not start
CUDA before it has chosen its GPU). Indices are read through CUDA in a Slurm job too, where a job's
numbering need not be ``nvidia-smi``'s. A GPU whose UUID no tool could read is named as given, within its
Slurm job when there is one (two jobs on one node may each call their own GPU 0). An index is read in
``nvidia-smi``'s order (PCI bus order), and the run is then pointed at that GPU by its UUID, so the lock and
the device always agree; CUDA's own order matches it on a machine of one GPU model.

MIG: a MIG instance named in ``CUDA_VISIBLE_DEVICES`` (``MIG-<uuid>``) counts as a GPU of its own. A GPU in
MIG mode named or listed as a whole is refused with a message that says how to name its instances: CUDA
would run on one of its instances, which the share would not account for.

The claimed GPU becomes the process's only visible device (``CUDA_VISIBLE_DEVICES``), so the run computes
on ``cuda`` (= ``cuda:0``) and its checkpoint resumes on any share of the same GPU model; a run given
``cuda:N`` computes on ``cuda`` too, which is that GPU.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from wscl.core.errors import ConfigError

LOCK_DIR_VARIABLE = "WSCL_GPU_LOCK_DIR"
POLL_SECONDS = 1.0
QUERY_TIMEOUT_S = 60
NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=index,uuid,mig.mode.current", "--format=csv,noheader"]
# Run in a child process, so that CUDA never starts in the parent before its GPU is chosen.
CUDA_QUERY = [sys.executable, "-c", "import json, torch; print(json.dumps([str(torch.cuda.get_device_properties(i)"
              ".uuid) for i in range(torch.cuda.device_count())]))"]
# Device files of a GPU driver: without any, CUDA cannot work and the child process is not worth starting.
DRIVER_FILES = ("/dev/nvidiactl", "/dev/dxg")


@dataclass(frozen=True)
class Gpu:
    name: str          # what CUDA_VISIBLE_DEVICES is set to for a run on this GPU
    uuid: str | None   # its UUID without the GPU-/MIG- prefix, lower case; None when it could not be read
    scope: str = ""    # where a name without a UUID is valid: a Slurm job's own numbering, else the machine

    @property
    def key(self) -> str:
        """What its lock files are named by: the UUID, else the name within its scope (no tool listed it)."""
        return self.uuid or f"{self.scope}{self.name}"


@dataclass(frozen=True)
class Listed:
    """One GPU as nvidia-smi lists it."""
    index: str
    uuid: str          # as printed: GPU-...
    mig: bool          # in MIG mode


def bare_uuid(text: str) -> str:
    return re.sub(r"^(GPU-|MIG-)", "", text.strip(), flags=re.IGNORECASE).lower()


def granted_entries() -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES (indices, UUIDs, MIG ids); None when it is not set."""
    granted = os.environ.get("CUDA_VISIBLE_DEVICES")
    if granted is None:
        return None
    entries = [g.strip() for g in granted.split(",")]
    return [g for g in entries if g and not g.startswith("-") and g != "NoDevFiles"]


def nvidia_smi_gpus() -> list[Listed] | None:
    """The machine's GPUs as nvidia-smi lists them; None without nvidia-smi or when it fails."""
    if shutil.which(NVIDIA_SMI_QUERY[0]) is None:
        return None
    try:
        listed = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if listed.returncode != 0:
        return None
    rows = [[field.strip() for field in line.split(",")] for line in listed.stdout.splitlines() if line.strip()]
    return [Listed(row[0], row[1], len(row) > 2 and row[2].lower() == "enabled") for row in rows if len(row) >= 2]


def cuda_uuids() -> list[str] | None:
    """The UUIDs of the GPUs CUDA shows this process (same CUDA_VISIBLE_DEVICES), read by a child process;
    None without a GPU driver or when the query fails."""
    if not any(Path(f).exists() for f in DRIVER_FILES):
        return None
    try:
        found = subprocess.run(CUDA_QUERY, capture_output=True, text=True, timeout=QUERY_TIMEOUT_S)
        return [bare_uuid(u) for u in json.loads(found.stdout)] if found.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use, in CUDA's order, one per physical GPU or MIG instance; [] without any."""
    granted, listed = granted_entries(), nvidia_smi_gpus()
    if granted == [] or (granted is None and listed == []):
        return []
    if listed is None or (os.environ.get("SLURM_JOB_ID") and granted and any(e.isdigit() for e in granted)):
        gpus = gpus_through_cuda(granted)
    elif granted is None:
        gpus = [gpu_of(g.uuid, listed) for g in listed]
    else:
        gpus = [gpu_of(entry, listed) for entry in granted]
    unique: dict[str, Gpu] = {}
    for gpu in gpus:
        unique.setdefault(gpu.key, gpu)  # one GPU named twice (by index and by UUID) is one GPU
    return list(unique.values())


def gpus_through_cuda(granted: list[str] | None) -> list[Gpu]:
    """Without nvidia-smi (or for a Slurm job's own numbering): CUDA's UUIDs, position by position."""
    uuids = cuda_uuids() or []
    names = granted if granted is not None else [str(i) for i in range(len(uuids))]
    job = os.environ.get("SLURM_JOB_ID")
    scope = f"slurm-job-{job}-" if job else ""  # two jobs on one node may both call their own GPU 0
    return [Gpu(name, uuids[i] if i < len(uuids) else None, scope) for i, name in enumerate(names)]


def gpu_of(entry: str, listed: list[Listed]) -> Gpu:
    """The GPU a CUDA_VISIBLE_DEVICES entry names: by index, by UUID or a UUID's prefix, or a MIG instance."""
    if entry.upper().startswith("MIG-"):
        return Gpu(entry, bare_uuid(entry) if "/" not in entry else None)  # a MIG instance counts as a GPU
    if entry.isdigit():
        match = [g for g in listed if g.index == entry]
    else:
        match = [g for g in listed if bare_uuid(g.uuid).startswith(bare_uuid(entry))]
    if len(match) != 1:
        return Gpu(entry, None)  # not listed: CUDA decides what it is; named as given
    gpu = match[0]
    if gpu.mig:
        raise ConfigError(f"GPU {gpu.index} ({gpu.uuid}) is in MIG mode: a run cannot share it as a whole; set "
                          "CUDA_VISIBLE_DEVICES to its MIG instances (the MIG-... UUIDs that `nvidia-smi -L` "
                          "lists), each of which then counts as a GPU, or disable MIG mode")
    return Gpu(gpu.uuid, bare_uuid(gpu.uuid))


def gpus_for(device: str) -> list[Gpu]:
    """The GPUs a run with ``runtime.device`` = ``device`` shares: all for auto and cuda, the N-th for cuda:N,
    none for cpu."""
    if device == "cpu":
        return []
    gpus = visible_gpus()
    index = re.fullmatch(r"cuda:(\d+)", device)
    if index is None or not gpus:
        return gpus
    if int(index.group(1)) >= len(gpus):
        raise ConfigError(f"runtime.device={device!r} but this machine shows {len(gpus)} GPU(s) "
                          f"(cuda:0 .. cuda:{len(gpus) - 1}); use one of those, cuda or auto")
    return [gpus[int(index.group(1))]]


def lock_dir() -> Path:
    """One folder per user and machine (not per study), so that two studies share the GPUs fairly."""
    folder = Path(os.environ.get(LOCK_DIR_VARIABLE) or Path(tempfile.gettempdir()) / f"wscl-gpu-shares-{os.getuid()}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Share:
    gpu: Gpu
    slot: int         # 0 .. runs_per_gpu - 1
    runs_per_gpu: int
    handle: object    # the open, locked file: the share is held while it stays open

    def describe(self) -> dict:
        return {"gpu": self.gpu.name, "uuid": self.gpu.uuid, "slot": self.slot, "runs_per_gpu": self.runs_per_gpu}

    def release(self) -> None:
        self.handle.close()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def try_claim(gpus: list[Gpu], runs_per_gpu: int, folder: Path) -> Share | None:
    """The first free share, slot by slot across GPUs; None when every share is held."""
    for slot in range(runs_per_gpu):
        for gpu in gpus:
            handle = open(folder / f"{_safe(gpu.key)}.{slot}.lock", "a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            return Share(gpu, slot, runs_per_gpu, handle)
    return None


def claim(gpus: list[Gpu], runs_per_gpu: int, folder: Path | None = None, log=None) -> Share:
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


def place_run(runtime, log=lambda msg: print(msg, file=sys.stderr)) -> Share | None:
    """Claim a GPU share for a run on a GPU device (``runtime.device`` auto, cuda, cuda:N) of a machine with GPUs,
    ``runtime.runs_per_gpu`` per GPU, and make that GPU the only one the process sees (a cuda:N run then
    computes on ``cuda``, which is that GPU: ``device_in_share``). None, and nothing changed, for a run on the
    CPU or without GPUs."""
    gpus = gpus_for(str(runtime.device))
    if not gpus:
        return None
    share = claim(gpus, int(runtime.runs_per_gpu), log=log)
    os.environ["CUDA_VISIBLE_DEVICES"] = share.gpu.name  # before CUDA starts: the run's cuda:0 is this GPU
    log(f"GPU share: GPU {share.gpu.name}, share {share.slot + 1} of {share.runs_per_gpu}")
    return share


def device_in_share(device: str) -> str:
    """The device a run computes on once its share is claimed: its one visible GPU is ``cuda``."""
    return "cuda" if str(device).startswith("cuda:") else str(device)


def announce(cfg, log=lambda msg: print(msg, file=sys.stderr)) -> None:
    """Say where the job runs: its Slurm job, and whether a granted GPU is usable (else the run uses the CPU)."""
    import torch
    if os.environ.get("SLURM_JOB_ID"):
        log(f"Slurm job {os.environ['SLURM_JOB_ID']} on node {os.environ.get('SLURMD_NODENAME', '?')}")
    granted = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if granted and cfg.runtime.device == "auto" and not torch.cuda.is_available():
        log(f"a GPU was granted (CUDA_VISIBLE_DEVICES={granted}) but CUDA is unavailable: running on the CPU")
