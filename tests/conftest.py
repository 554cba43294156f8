import copy
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from wscl.settings.config import resolve

TINY = {
    "seed": 0,
    "dataset": {"synthetic": {"classes": 6, "dream_classes": 6, "train_per_class": 80, "test_per_class": 30,
                              "dream_per_class": 20, "size": 12, "channels": 3,
                              "contrast": 60.0, "noise": 40.0}},
    "scenario": {"n_tasks": 3, "classes_per_task": 2, "val_per_task": 10, "freeze_buffer_per_task": 6},
    "model": {"width": 8},
    "training": {"epochs": 2, "batch_size": 16, "replay_batch_size": 16},
    "runtime": {"device": "cpu", "progress": False},
}


# What legitimately differs between two runs of the same configuration: wall-clock figures, and the GPU share a
# job was placed on (run/placement.py).
TIMINGS = {"wall_seconds", "task_wall_seconds", "train_images_per_second", "phases", "peak_rss_mb", "gpu_share"}
EPOCH_TIMINGS = {"seconds", "images_per_second", "peak_memory_mb"}  # of each dynamics entry (wscl/method/dynamics.py)


def numbers(metrics: dict) -> dict:
    """Everything a run reports except wall-clock and machine figures (the epochs' losses stay)."""
    out = {k: v for k, v in metrics.items() if k not in TIMINGS}
    out["tasks"] = [{**task, "dynamics": [{k: v for k, v in e.items() if k not in EPOCH_TIMINGS}
                                          for e in task.get("dynamics", [])]} for task in metrics.get("tasks", [])]
    return out


def tiny_config(**sections) -> dict:
    """The tiny synthetic run used across tests, with nested overrides."""
    from wscl.settings.config import deep_merge
    return resolve(deep_merge(copy.deepcopy(TINY), sections))


@pytest.fixture
def disk(tmp_path, monkeypatch):
    """A 1.5 MB tmpfs (tests/disk_faults.py) whose files the test can fill, truncate or make unwritable."""
    from disk_faults import Disk
    d = Disk(tmp_path / "disk", 1500, monkeypatch)
    yield d
    d.close()


@pytest.fixture
def tiny():
    return tiny_config


# --- Workflow fixtures shared by several modules: each runs once per test run (package scope: the tests/
# folder, which holds every test module). ---

@pytest.fixture(scope="package")
def smoke(tmp_path_factory):
    """The smoke study, finished locally with the default SQLite store (all targets and the archive)."""
    from workflow_support import snakemake, workflow_copy
    workdir = workflow_copy(tmp_path_factory.mktemp("smoke"))
    snakemake(workdir, "all", "archive")
    return workdir


@pytest.fixture(scope="package")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 at a free port, with its own backend store and artifact root."""
    from workflow_support import BIN, free_port, port_in_use
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]
    with open(root / "server.log", "w") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, server, root / "server.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:  # its job runner waits long for a graceful shutdown
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    assert not port_in_use(port), f"the tracking server's port {port} is still in use"


def wait_until_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="package")
def local_server_study(tmp_path_factory, mlflow_server):
    """The GPU variant of the smoke study, run locally (4 jobs at once), logging to the tracking server."""
    from workflow_support import BARE_ENV, gpu_study, snakemake, workflow_copy
    workdir = workflow_copy(tmp_path_factory.mktemp("local_server"))
    gpu_study(workdir, "smoke_local", mlflow_server)
    snakemake(workdir, env=BARE_ENV)
    return workdir
