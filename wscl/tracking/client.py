"""The MLflow client of every tracking job: the tracking URI, the client, retries for SQLite's one writer, the
message for an unreachable store, and the experiment kind the UI opens as model training."""
from __future__ import annotations

import os
import time
from pathlib import Path

MAX_BATCH = 1000  # MLflow's limit of metrics per log_batch call


# The experiment tag by which the MLflow UI (3.x) opens an experiment as model training, not GenAI.
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


NO_TRACKING = "none"  # --mlflow-uri none: no MLflow, even with $MLFLOW_TRACKING_URI set


GROUP_TAG = "wscl.group"


def tracking_uri(explicit: str | None) -> str | None:
    if explicit is not None and explicit.strip().lower() == NO_TRACKING:
        return None
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or None


def mlflow_client(uri: str):
    from mlflow.tracking import MlflowClient
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri=uri)


def with_retries(fn, attempts: int = 8):
    """SQLite stores allow one writer at a time: retry briefly when parallel jobs collide."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:  # MlflowException / sqlalchemy OperationalError wrap "database is locked"
            if "locked" not in str(exc).lower() or attempt == attempts - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)


def unreachable(uri: str, exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"MLflow at {uri} cannot be reached or written ({type(exc).__name__}: {first[:200]})"


def mark_model_training(client, experiment_id: str) -> None:
    """Tag the experiment so that the MLflow UI opens it as a model-training experiment (its runs table)."""
    client.set_experiment_tag(experiment_id, *EXPERIMENT_KIND)
