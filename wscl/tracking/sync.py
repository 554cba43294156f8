"""Re-logging a study's finished runs to its MLflow destination (``wscl mlflow-sync``): every run the
store lacks or holds in another version, each once."""
from __future__ import annotations

from pathlib import Path

from wscl.core.errors import RunResultError, TrackingError
from wscl.method.metrics import read_metrics
from wscl.tracking.client import unreachable
from wscl.tracking.parents import parent_from_setup
from wscl.tracking.pending import claimed, remove_pending
from wscl.tracking.rows import run_key
from wscl.tracking.runs import Destination, digest, log_run_marked, logged_digests


def sync_runs(setup: dict, runs: list[tuple[str, str]], log=print) -> dict:
    """Log every finished run (group, run folder) that the destination lacks or holds in another version.

    Idempotent: a run whose metrics.json digest is already tagged on its child run is left alone.
    """
    uri = setup["tracking_uri"]
    try:
        present = logged_digests(uri, setup["experiment_id"])
    except Exception as exc:  # server down, store locked past the retries: nothing is lost, sync again later
        raise TrackingError(unreachable(uri, exc) + "; every run stays in its metrics.json: rerun "
                            "`wscl mlflow-sync` (or the workflow) once the store is reachable") from exc
    report = {"tracking_uri": uri, "experiment": setup["experiment"], "logged": [], "unchanged": [], "missing": [],
              "busy": []}
    for group, out_dir in runs:
        metrics_file = Path(out_dir) / "metrics.json"
        if not metrics_file.exists():
            report["missing"].append(out_dir)
            continue
        read = read_metrics(metrics_file)  # verified and parsed once, for the comparison and the logging
        if read[0].get("status") == "failed":  # stopped in training: no figures to log; the parent names it
            report.setdefault("failed", []).append(out_dir)
            continue
        if present.get(run_key(out_dir)) == digest(read[1]):
            remove_pending(out_dir)  # logged by another process since it was marked
            report["unchanged"].append(out_dir)
        else:
            with claimed(out_dir) as claim:
                if claim is False:
                    report["busy"].append(out_dir)
                    continue
                parent = parent_from_setup(setup, group)
                try:
                    log_run_marked(metrics_file, Destination(uri, parent_run_id=parent), read=read)
                except RunResultError:
                    raise  # the run's own file is broken, not the store: its message says how to write it again
                except Exception as exc:
                    raise TrackingError(f"{out_dir}: {unreachable(uri, exc)}; the run stays in its metrics.json: "
                                        "rerun `wscl mlflow-sync` (or the workflow) once the store is reachable") \
                        from exc
            report["logged"].append(out_dir)
            log(f"logged {out_dir}")
    return report
