"""Running the workflow in a temporary copy of it: shared by the workflow, tracking-server and Slurm tests."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import numbers
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": ""}
# The environment of a user who did not activate .venv: jobs must find `wscl` anyway.
BARE_ENV = {**ENV, "PATH": os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                                           if p and Path(p).resolve() != BIN.resolve())}
SMOKE_RUNS = [(preset, seed) for preset in ("base", "full") for seed in (0, 1)]


def workflow_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "Snakefile", dest)
    for folder in ("rules", "config", "profiles", "report", "envs"):
        shutil.copytree(REPO / folder, dest / folder)
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [str(BIN / "snakemake"), "--configfile", "config/smoke.yaml", "--cores", "4", *args]
    done = subprocess.run(cmd, cwd=workdir, env=env or ENV, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def job_counts(dry_run_output: str) -> dict[str, int]:
    """Rule -> job count from the 'Job stats' table of a dry run."""
    counts = {}
    table = dry_run_output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def edit_smoke_config(workdir: Path, settings: dict) -> None:
    """Set dotted keys (e.g. ``trainer.runtime.device``) in the copy's config/smoke.yaml."""
    path = workdir / "config/smoke.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in settings.items():
        *parents, last = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config))


def gpu_study(workdir: Path, study: str, tracking_uri: str) -> None:
    """The smoke study as a GPU study logging to a tracking server (the same settings locally and on Slurm).

    The base runs train longer, so that a job can be caught between its first checkpoint and its end.
    """
    overrides = yaml.safe_load((workdir / "config/smoke.yaml").read_text())["overrides"]
    overrides.append({"match": {"preset": "base"}, "trainer": {"training": {"epochs": 20}}})
    edit_smoke_config(workdir, {"study": study, "mlflow.tracking_uri": tracking_uri, "overrides": overrides,
                                "trainer.runtime.device": "auto", "resources.train.gpu": 1})


def metrics_path(workdir: Path, preset: str, seed: int) -> Path:
    return workdir / f"results/runs/synthetic/buffer20/er_ace/{preset}/reference/seed{seed}/metrics.json"


def train_log(workdir: Path, preset: str, seed: int) -> Path:
    return workdir / f"results/logs/train/synthetic/buffer20/er_ace/{preset}/reference/seed{seed}.log"


def results_without_timings(workdir: Path) -> dict:
    """Every run's metrics.json without what legitimately differs between two runs of it: wall times."""
    return {run: numbers(json.loads(metrics_path(workdir, *run).read_text())) for run in SMOKE_RUNS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def children_by_run(client: MlflowClient, experiment: str) -> dict:
    """(preset, seed) -> child run of an experiment; fails on a missing or doubled run."""
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    runs = [r for r in client.search_runs([found.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    keyed = {(r.data.tags["preset"], int(r.data.tags["seed"])): r for r in runs}
    assert len(runs) == len(keyed) == len(SMOKE_RUNS), [r.data.tags["wscl.run_key"] for r in runs]
    return keyed


def assert_run_holds_metrics(client: MlflowClient, child, metrics: dict) -> None:
    """An MLflow child run holds the final metrics and the per-task history of its metrics.json."""
    for setting in ("class_il", "task_il"):
        for key in ("final_avg_acc", "forgetting", "bwt", "fwt"):
            assert child.data.metrics[f"{setting}/{key}"] == pytest.approx(metrics[setting][key])
        history = client.get_metric_history(child.info.run_id, f"{setting}/acc_task_0")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(
            [row[0] for row in metrics[setting]["accuracy_matrix"]])


def assert_server_holds_study(url: str, experiment: str, workdir, tmp_path) -> None:
    """Every run, its per-task metrics and its metrics.json artifact, as the run folders hold them."""
    client = MlflowClient(tracking_uri=url)
    children = children_by_run(client, experiment)
    assert set(children) == set(SMOKE_RUNS)
    for run, child in children.items():
        metrics = json.loads(metrics_path(workdir, *run).read_text())
        assert_run_holds_metrics(client, child, metrics)
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {"metrics.json", "accuracy_matrix.png"}
        fetched = client.download_artifacts(child.info.run_id, "metrics.json", str(tmp_path))
        assert json.loads(open(fetched).read()) == metrics
