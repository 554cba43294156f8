"""The smoke study on a real one-node Slurm cluster (tests/slurm/cluster.sh) through profiles/slurm.

The cluster runs on the loopback interface with a fake GPU; the study logs to the test run's MLflow tracking
server. One cluster and one study run serve the whole module; the last test stops the cluster.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from workflow_support import (
    BARE_ENV,
    BIN,
    REPO,
    SMOKE_RUNS,
    assert_server_holds_study,
    gpu_study,
    metrics_path,
    port_in_use,
    results_without_timings,
    train_log,
    workflow_copy,
)

SCRIPT = REPO / "tests/slurm/cluster.sh"
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION, ACCOUNT = "debug", "wscl"  # what tests/slurm/cluster.sh defines
CANCELLED = ("base", 0)  # the run whose job is cancelled after its first checkpoint


class Cluster:
    def __init__(self, state: Path):
        self.state = state
        self.env = {**BARE_ENV, "SLURM_CONF": str(state / "slurm.conf")}

    def start(self) -> None:
        done = subprocess.run([str(SCRIPT), "start", str(self.state)], capture_output=True, text=True)
        if done.returncode != 0:
            self.stop()
            logs = "\n".join(p.read_text()[-2000:] for p in self.state.glob("log/*.log"))
            raise AssertionError(f"the Slurm test cluster did not start:\n{done.stdout}\n{done.stderr}\n{logs}")

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.state)], capture_output=True, text=True, check=True)

    def ports(self) -> list[int]:
        text = (self.state / "slurm.conf").read_text()
        return [int(p) for p in re.findall(r"^Slurm(?:ctld|d)Port=(\d+)$", text, re.M)]

    def daemons(self) -> list[psutil.Process]:
        """This cluster's daemons: their command lines name its state folder."""
        return [p for p in psutil.process_iter(["name", "cmdline"])
                if p.info["name"] in DAEMONS and str(self.state) in " ".join(p.info["cmdline"] or [])]

    def jobs(self) -> dict[int, dict]:
        """Every job the cluster still lists (MinJobAge keeps finished ones): id -> state, comment."""
        out = subprocess.run(["squeue", "-t", "all", "-h", "-o", "%i|%T|%k"], env=self.env, capture_output=True,
                             text=True, check=True).stdout
        rows = (line.split("|", 2) for line in out.splitlines() if line.strip())
        return {int(i): {"state": state, "comment": comment} for i, state, comment in rows}

    def job_field(self, job: int, field: str) -> str:
        out = subprocess.run(["scontrol", "show", "job", str(job)], env=self.env, capture_output=True, text=True,
                             check=True).stdout
        return re.search(rf"\b{field}=(\S*)", out).group(1)


def slurm_installed() -> bool:
    return all(shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
               for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel"))


@pytest.fixture(scope="module")
def cluster():
    if not slurm_installed():
        message = "Slurm is not installed (apt-get install slurmctld slurmd slurm-client munge)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)  # CI installs it (.ci/run): the Slurm tests must run there
        pytest.skip(message)
    # In /tmp, not $TMPDIR: munged runs as user munge and must reach its socket folder.
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="wscl-slurm-", dir="/tmp")))
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.state, ignore_errors=True)


def slurm_command() -> list[str]:
    """What docs/usage.md's cluster section runs, plus what this accounting-free test cluster needs."""
    return [str(BIN / "snakemake"), "--workflow-profile", "profiles/slurm", "--configfile", "config/smoke.yaml",
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
            "--retries", "0"]  # a cancelled job fails this invocation, as a preemption past the retries would


def only_partition_and_account_changed(workdir: Path) -> None:
    profile = workdir / "profiles/slurm/config.v8+.yaml"
    text = profile.read_text()
    text = re.sub(r'(?m)^(\s+slurm_partition:) "[^"]*"', rf'\1 "{PARTITION}"', text)
    text = re.sub(r'(?m)^(\s+slurm_account:) "[^"]*"', rf'\1 "{ACCOUNT}"', text)
    profile.write_text(text)


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"snakemake ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def slurm_job_of(log: Path) -> int | None:
    match = re.search(r"^Slurm job (\d+) on node", log.read_text(), re.M) if log.exists() else None
    return int(match.group(1)) if match else None


@pytest.fixture(scope="module")
def slurm_study(cluster, mlflow_server, tmp_path_factory):
    """The study through Slurm; one training job is cancelled after its first checkpoint, then rerun."""
    workdir = workflow_copy(tmp_path_factory.mktemp("slurm"))
    only_partition_and_account_changed(workdir)
    gpu_study(workdir, "smoke_slurm", mlflow_server)
    with open(workdir / "first.log", "w") as out:  # a file, not a pipe that could fill up and block
        first = subprocess.Popen(slurm_command(), cwd=workdir, env=cluster.env, stdout=out,
                                 stderr=subprocess.STDOUT)
    run_dir = metrics_path(workdir, *CANCELLED).parent
    wait_for(lambda: (run_dir / "checkpoint.pt").exists(), "the first checkpoint", first)
    job = slurm_job_of(train_log(workdir, *CANCELLED))
    assert job is not None and not (run_dir / "metrics.json").exists(), "the job finished before its cancel"
    subprocess.run(["scancel", str(job)], env=cluster.env, check=True)
    assert first.wait(timeout=600) != 0, (workdir / "first.log").read_text()[-3000:]
    assert not (run_dir / "metrics.json").exists()
    second = subprocess.run(slurm_command(), cwd=workdir, env=cluster.env, capture_output=True, text=True)
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    return {"workdir": workdir, "cancelled_job": job}


def test_every_training_ran_as_a_slurm_job_and_nothing_else_did(cluster, slurm_study):
    jobs = cluster.jobs()
    rules = {re.match(r"rule_(.+?)(?:_wildcards_|$)", job["comment"]).group(1) for job in jobs.values()}
    assert rules == {"train"}  # all, mlflow_setup, mlflow_sync, aggregate, report: local rules
    trained = {slurm_job_of(train_log(slurm_study["workdir"], *run)) for run in SMOKE_RUNS}
    assert None not in trained and trained <= set(jobs)
    assert {jobs[job]["state"] for job in trained} == {"COMPLETED"}
    # Four runs, plus the cancelled attempt: one job each.
    assert len(jobs) == len(SMOKE_RUNS) + 1 and jobs[slurm_study["cancelled_job"]]["state"] == "CANCELLED"


def test_a_gpu_job_is_granted_a_gpu_and_trains_on_the_cpu_when_cuda_is_missing(cluster, slurm_study):
    for run in SMOKE_RUNS:
        log = train_log(slurm_study["workdir"], *run).read_text()
        assert cluster.job_field(slurm_job_of(train_log(slurm_study["workdir"], *run)), "TresPerJob") == "gres:gpu:1"
        assert re.search(r"a GPU was granted \(CUDA_VISIBLE_DEVICES=\d\) but CUDA is unavailable: running on the CPU",
                         log), log
        metrics = json.loads(metrics_path(slurm_study["workdir"], *run).read_text())
        assert metrics["device"] == "cpu" and metrics["config"]["runtime"]["device"] == "auto"


def test_a_cancelled_job_resumes_from_its_checkpoint(slurm_study):
    log = train_log(slurm_study["workdir"], *CANCELLED).read_text()
    # scancel sends SIGTERM: the trainer checkpoints at its next stop point and the next job resumes there.
    # The cancel follows the first checkpoint (end of task 1) by a moment that depends on the machine's load:
    # the stop point is either inside task 2 (a wake step) or, when SIGTERM arrives while task 1's end is
    # still being logged to MLflow, the end of task 1. Both resume exactly (test_slurm_results_equal_...).
    assert re.search(r"resuming \S+ (inside task 2 of 2 \(wake epoch \d+, step \d+\)|after task 1 of 2)", log), log
    assert slurm_job_of(train_log(slurm_study["workdir"], *CANCELLED)) != slurm_study["cancelled_job"]


def test_slurm_results_equal_local_results(slurm_study, local_server_study):
    # The cancelled and resumed run included: identical metrics, apart from wall times.
    assert results_without_timings(slurm_study["workdir"]) == results_without_timings(local_server_study)


def test_slurm_jobs_log_every_run_to_the_server(slurm_study, mlflow_server, tmp_path):
    assert_server_holds_study(mlflow_server, "smoke_slurm", slurm_study["workdir"], tmp_path)
    experiment = MlflowClient(tracking_uri=mlflow_server).get_experiment_by_name("smoke_slurm")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")


def test_stopping_the_cluster_leaves_nothing_running(cluster):
    assert {p.info["name"] for p in cluster.daemons()} == set(DAEMONS)  # the check below can fail
    ports = cluster.ports()
    assert all(port_in_use(port) for port in ports)
    cluster.stop()
    assert cluster.daemons() == []
    assert not any(port_in_use(port) for port in ports)
    assert not Path("/run/slurm/conf/slurm.conf").exists()
