"""A finished run that could not be logged (tracking server down, SQLite locked past the retries).

Its metrics.json is already written, so the job still succeeds; `mlflow_pending.json` in the run folder
marks it as not yet logged and says where it goes. `wscl mlflow-sync` (the workflow's `mlflow_sync` rule,
which runs before the aggregation) logs it, once: a run folder has one child run (found by its run key),
and a marker being logged is first renamed to a claim that a second process leaves alone."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from wscl.core.errors import RunResultError
from wscl.tracking.client import unreachable
from wscl.tracking.runs import Destination, OpenRun, log_run_marked, metrics_digest

PENDING = "mlflow_pending.json"


CLAIM = ".mlflow_pending.claim"


STALE_CLAIM_S = 3600  # a claim older than this was left by a process that died while logging


def mark_pending(out_dir: str | Path, destination: dict, exc: BaseException) -> Path:
    """Record that the finished run in ``out_dir`` still has to be logged to ``destination``
    (tracking_uri, experiment, parent_run_id)."""
    from wscl.core.safe_io import atomic_write_json
    path = Path(out_dir) / PENDING
    atomic_write_json(path, {**destination, "error": unreachable(destination["tracking_uri"], exc),
                             "metrics_sha256": metrics_digest(Path(out_dir) / "metrics.json"),
                             "marked_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, sealed=True)
    return path


def remove_pending(out_dir: str | Path) -> None:
    from wscl.core.safe_io import remove_quietly, seal_path
    remove_quietly(Path(out_dir) / PENDING)
    remove_quietly(seal_path(Path(out_dir) / PENDING))


def pending(out_dir: str | Path) -> dict | None:
    """The run's pending marker (None without one), checked against its digest: a damaged marker raises
    ``RunResultError`` saying how the run gets logged all the same."""
    from wscl.core.safe_io import read_result
    marker = Path(out_dir) / PENDING
    if not marker.exists():
        return None
    content = read_result(marker, "delete it; the study's mlflow_sync rule (`wscl mlflow-sync --study-json ... "
                                  "--setup ...`) logs every finished run the store lacks, this one too")
    try:
        return json.loads(content)
    except ValueError:
        return {}


class claimed:
    """``with claimed(out_dir) as claim``: the pending marker (if any) renamed to a claim while the block logs
    the run; removed when it succeeds, put back when it fails. ``claim`` is False when another process holds
    a fresh claim (skip the run), else the marker's content or None (no marker)."""

    def __init__(self, out_dir: str | Path):
        self.marker, self.claim = Path(out_dir) / PENDING, Path(out_dir) / CLAIM
        self.held = False

    def __enter__(self):
        try:
            age = time.time() - self.claim.stat().st_mtime
            if age < STALE_CLAIM_S:
                return False
        except FileNotFoundError:
            pass
        try:
            os.replace(self.marker, self.claim)
        except FileNotFoundError:
            return None
        self.held = True
        os.utime(self.claim)
        try:
            return json.loads(self.claim.read_text())
        except (OSError, ValueError):
            return {}

    def __exit__(self, kind, exc, tb):
        if self.held:
            if kind is None:
                self.claim.unlink(missing_ok=True)
                from wscl.core.safe_io import remove_quietly, seal_path
                remove_quietly(seal_path(self.marker))
            else:
                os.replace(self.claim, self.marker)
        return False


def log_finished(metrics_file: str | Path, destination: dict, run_id: str | None = None,
                 tasks_logged: set[int] | frozenset = frozenset(), log=print) -> str | None:
    """Log a finished run whose metrics.json is written; if the store cannot be reached, mark the run as not
    yet logged (mlflow_pending.json) and say so in one line instead of failing. Returns the run id or None."""
    out_dir = Path(metrics_file).parent
    try:
        to = Destination(destination["tracking_uri"], destination.get("experiment"), destination.get("parent_run_id"))
        run_id = log_run_marked(metrics_file, to, None if run_id is None else OpenRun(run_id, tasks_logged))
    except Exception as exc:  # noqa: BLE001 - any tracking failure: the finished run must not be lost
        marker = mark_pending(out_dir, destination, exc)
        log(f"warning: {unreachable(destination['tracking_uri'], exc)}; the run is complete in {metrics_file} and "
            f"marked as not yet logged ({marker}): `wscl mlflow-sync` (the workflow's mlflow_sync rule) logs it")
        return None
    remove_pending(out_dir)
    return run_id


def sync_pending(run_dirs: list[str | Path], log=print) -> dict:
    """Log every run folder that carries a pending marker to the destination the marker names (idempotent).

    A store still unreachable leaves the marker in place for the next try, as does a run whose metrics.json
    cannot be read (``invalid``: no retry helps; the log says how to write it again); returns
    logged/failed/busy/invalid."""
    report = {"logged": [], "failed": [], "busy": [], "invalid": []}
    for out_dir in run_dirs:
        try:
            marker = pending(out_dir)
        except RunResultError as exc:
            report["invalid"].append(str(out_dir))
            log(str(exc))
            continue
        if marker is None:
            continue
        uri = marker.get("tracking_uri", "?")
        try:
            with claimed(out_dir) as claim:
                if claim is False:
                    report["busy"].append(str(out_dir))
                    continue
                if claim is None:
                    continue  # logged meanwhile by another process
                log_run_marked(Path(out_dir) / "metrics.json",
                               Destination(uri, claim.get("experiment"), claim.get("parent_run_id")))
        except RunResultError as exc:
            report["invalid"].append(str(out_dir))
            log(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - still unreachable: keep the marker for the next try
            report["failed"].append(str(out_dir))
            log(f"{out_dir}: not logged yet ({unreachable(uri, exc)}); the next sync tries again")
            continue
        report["logged"].append(str(out_dir))
        log(f"logged pending run {out_dir} to {uri}")
    return report
