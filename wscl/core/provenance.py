"""Where results come from: the dataset a run read (content SHA-256, verified or not), the code (git commit,
dirty tree), the software versions and the device. The one source for them: the trainer's metrics, the
archive's environment, the report, the tables and MLflow."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path


def dataset_identity(metrics: dict) -> dict:
    """name, sha256, source, verified (checksums of the raw files checked), generated (made in memory from
    settings: no raw files), digest (the SHA-256, or "unknown").

    The content SHA-256 comes from the run's metrics.json (``dataset_sha256``) when the trainer wrote it,
    else from the prepared dataset's meta.json; generated data has the digest its prepared folder would have."""
    cfg = metrics.get("config", {}).get("dataset", {})
    name = metrics.get("dataset") or cfg.get("name", "unknown")
    verified = bool(metrics.get("dataset_checksums_verified", False))
    if cfg.get("name", name) == "synthetic":
        settings = json.dumps(cfg.get("synthetic", {}), sort_keys=True)
        sha = metrics.get("dataset_sha256")
        return {"name": name, "sha256": sha, "source": f"wscl.data.synthetic {settings}", "verified": verified,
                "generated": True, "digest": sha or "unknown"}
    sha, source = metrics.get("dataset_sha256"), None
    meta_path = Path(cfg.get("root", "data")) / cfg.get("name", name) / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        sha = sha or meta.get("sha256")
        source = meta.get("source")
    return {"name": name, "sha256": sha, "source": source or str(meta_path.parent), "verified": verified,
            "generated": False, "digest": sha or "unknown"}


def _git(folder: str | Path | None, *args: str) -> str | None:
    cwd = Path(folder) if folder else Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_commit(folder: str | Path | None = None) -> str:
    """Commit of the repository holding ``folder`` (default: this package); "unknown" outside one."""
    commit = _git(folder, "rev-parse", "HEAD")
    return commit.strip() if commit and commit.strip() else "unknown"


def git_state(folder: str | Path | None = None) -> dict:
    """Commit and whether the working tree has uncommitted changes (of the repository holding ``folder``)."""
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return {"commit": git_commit(folder), "dirty": None if status is None else bool(status.strip())}


def device_name(device) -> str:
    """The GPU's name, else the host's processor with the CPU kernels torch runs on it."""
    import torch
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_description()


def cpu_description() -> str:
    """The processor's model and the vector kernels torch uses on it, e.g. ``AMD EPYC (AVX2)``. The kernels
    decide the order of floating-point sums: the same seed gives the same numbers on the same CPU kind and
    torch, other numbers on another (docs/determinism.md)."""
    import torch
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the platform's processor name
        pass
    kernels = torch.backends.cpu.get_cpu_capability() + (", AMX" if "amx_tile" in flags else "")
    return f"{model} ({kernels})"


def run_provenance(device) -> dict:
    """What a run's metrics.json records about the code and machine that produced it."""
    import torch

    from wscl import __version__
    return {"device_name": device_name(device), "wscl_version": __version__, "git_commit": git_commit(),
            "torch_version": torch.__version__}


def environment() -> dict:
    """The archive's record of the software: versions, git state and the full ``pip freeze``."""
    import torch
    versions = software_versions()
    git = git_state()
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    return {"python": sys.version, "platform": versions["platform"], "wscl": versions["wscl"],
            "torch": versions["torch"], "cuda": versions["cuda"], "cuda_available": torch.cuda.is_available(),
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "snakemake": versions["snakemake"], "git_commit": git["commit"], "git_dirty": git["dirty"],
            "pip_freeze": freeze.splitlines()}


def software_versions() -> dict:
    """Versions of what produced and aggregated the results (None where a package is missing)."""
    from wscl import __version__

    def version(module: str) -> str | None:
        try:
            return __import__(module).__version__
        except ImportError:
            return None

    out = {"python": platform.python_version(), "wscl": __version__, "torch": version("torch"), "cuda": None,
           "snakemake": version("snakemake"), "mlflow": version("mlflow"), "platform": platform.platform()}
    if out["torch"]:
        import torch
        out["cuda"] = torch.version.cuda
    out["executable"] = sys.executable
    return out
