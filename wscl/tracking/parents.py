"""The study's experiment and one parent run per group (``wscl mlflow-setup``), the setup.json every
training job reads its destination from, and the seed statistics and verdicts written onto the parents
once a study is aggregated."""
from __future__ import annotations

import time
from pathlib import Path

from wscl.core.errors import TrackingError
from wscl.core.safe_io import read_json_result
from wscl.tracking.client import GROUP_TAG, mark_model_training, mlflow_client, with_retries
from wscl.tracking.rows import dataset_input, parent_metrics, parent_tags

# mlflow-setup finds the experiment and parents it created before, so writing setup.json again loses nothing
SETUP_AGAIN = ("delete it and rerun the workflow (the mlflow_setup rule writes it again; runs logged before are "
               "kept), or `wscl mlflow-setup --out` it with the study's settings")


def setup_study(uri: str, experiment: str, artifact_root: str | None, groups: list[str]) -> dict:
    """Create (if missing) the experiment and one parent run per group; idempotent."""
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = str(Path(artifact_root).resolve()) if artifact_root else None
        experiment_id = client.create_experiment(experiment, artifact_location=location)
    else:
        experiment_id = found.experiment_id
    mark_model_training(client, experiment_id)
    parents = {}
    for group in groups:
        existing = client.search_runs([experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'")
        if existing:
            parents[group] = existing[0].info.run_id
        else:
            run = client.create_run(experiment_id, run_name=group, tags={GROUP_TAG: group})
            client.set_terminated(run.info.run_id, "FINISHED")
            parents[group] = run.info.run_id
    return {"tracking_uri": uri, "experiment": experiment, "experiment_id": experiment_id, "parents": parents}


def find_parent(uri: str, experiment: str, group: str) -> str:
    client = mlflow_client(uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{GROUP_TAG}` = '{group}'") if found else []
    if not runs:
        raise TrackingError(f"no MLflow parent run for group {group!r} in experiment {experiment!r} at {uri}; "
                           "run `python -m wscl mlflow-setup` (the workflow's mlflow_setup rule) first")
    return runs[0].info.run_id


def load_setup(path: str | Path) -> dict:
    """The tracking URI, experiment and parent run ids that `wscl mlflow-setup --out` wrote (and sealed)."""
    return read_json_result(path, SETUP_AGAIN, error=TrackingError)


def parent_from_setup(setup: dict, group: str) -> str:
    try:
        return setup["parents"][group]
    except KeyError:
        raise TrackingError(f"no parent run for group {group!r} in the MLflow setup of experiment "
                            f"{setup.get('experiment')!r}; rerun `wscl mlflow-setup` with this group") from None


def summarize_parents(uri: str, experiment: str, rows: dict[str, dict], datasets: dict[str, dict]) -> int:
    """Write each group's table row onto its parent run (seed mean/std metrics, verdict tags, the dataset
    input) and stretch the parent's end time to its last child's. Returns how many parents were updated."""
    from mlflow.entities import Metric, RunTag

    def update() -> int:
        client = mlflow_client(uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return 0
        mark_model_training(client, found.experiment_id)
        runs = client.search_runs([found.experiment_id], max_results=50000)
        parents = {r.data.tags[GROUP_TAG]: r for r in runs if GROUP_TAG in r.data.tags}
        ends: dict[str, int] = {}
        for r in runs:
            parent = r.data.tags.get("mlflow.parentRunId")
            if parent and r.info.end_time:
                ends[parent] = max(ends.get(parent, 0), r.info.end_time)
        now = int(time.time() * 1000)
        updated = 0
        for group, row in rows.items():
            parent = parents.get(group)
            if parent is None:
                continue
            run_id = parent.info.run_id
            client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in parent_metrics(row).items()],
                             tags=[RunTag(k, v) for k, v in parent_tags(row).items()])
            if group in datasets and not parent.inputs.dataset_inputs:
                client.log_inputs(run_id, datasets=[dataset_input(datasets[group])])
            end = max(ends.get(run_id, 0), parent.info.end_time or 0)
            client.set_terminated(run_id, "FINISHED", end_time=end or None)
            updated += 1
        return updated
    return with_retries(update)
