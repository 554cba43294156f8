"""Where results come from: the dataset a run read (content SHA-256, verified or not), the code (git commit,
dirty tree) and the software versions. Used by the report, the tables and MLflow."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

GENERATED = "generated"  # the digest of `synthetic`, which is generated in memory from its settings


def dataset_identity(metrics: dict) -> dict:
    """name, sha256 (None for generated data), source, verified (checksums of the raw files checked).

    The content SHA-256 comes from the run's metrics.json (``dataset_sha256``) when the trainer wrote it,
    else from the prepared dataset's meta.json; ``synthetic`` is generated, so it has none."""
    cfg = metrics.get("config", {}).get("dataset", {})
    name = metrics.get("dataset") or cfg.get("name", "unknown")
    verified = bool(metrics.get("dataset_checksums_verified", False))
    if cfg.get("name", name) == "synthetic":
        settings = json.dumps(cfg.get("synthetic", {}), sort_keys=True)
        return {"name": name, "sha256": None, "source": f"wscl.data.synthetic {settings}", "verified": verified,
                "digest": GENERATED}
    sha, source = metrics.get("dataset_sha256"), None
    meta_path = Path(cfg.get("root", "data")) / cfg.get("name", name) / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        sha = sha or meta.get("sha256")
        source = meta.get("source")
    return {"name": name, "sha256": sha, "source": source or str(meta_path.parent), "verified": verified,
            "digest": sha or "unknown"}


def git_state(folder: str | Path | None = None) -> dict:
    """Commit and whether the working tree has uncommitted changes (of the repository holding ``folder``)."""
    cwd = Path(folder) if folder else Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit.strip() if commit else "unknown", "dirty": None if status is None else bool(status.strip())}


def software_versions() -> dict:
    """Versions of what produced and aggregated the results (None where a package is missing)."""
    from . import __version__

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
