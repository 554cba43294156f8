"""GPU shares (wscl/run/placement.py): real concurrent processes on fake device lists, on the CPU."""
import json
import os
import re
import selectors
import signal
import subprocess
import sys

import pytest

from wscl.run import placement

# A process that claims a share, reports it as one JSON line, then holds it until its stdin closes.
HOLDER = """
import json, sys
from pathlib import Path
from wscl.run import placement
share = placement.claim(sys.argv[1].split(","), int(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps(share.describe()), flush=True)
sys.stdin.read()
"""


def start_holder(gpus, k, folder):
    return subprocess.Popen([sys.executable, "-c", HOLDER, ",".join(gpus), str(k), str(folder)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def share_of(process, timeout: float = 60) -> dict | None:
    """The share a holder reports, or None if it reports none within ``timeout`` seconds (it is waiting)."""
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return None
    return json.loads(process.stdout.readline())


@pytest.fixture
def holders():
    started = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_processes_started_together_get_distinct_shares_and_never_more_than_k_per_gpu(tmp_path, holders):
    gpus, k = ["0", "1", "GPU-5a3f"], 2
    holders += [start_holder(gpus, k, tmp_path) for _ in range(len(gpus) * k)]  # all in the same second
    shares = [share_of(p) for p in holders]
    assert len({(s["gpu"], s["slot"]) for s in shares}) == len(shares)  # no share given twice
    assert {g: sum(s["gpu"] == g for s in shares) for g in gpus} == {g: k for g in gpus}
    waiting = start_holder(gpus, k, tmp_path)
    holders.append(waiting)
    assert share_of(waiting, timeout=3) is None  # all K shares of every GPU held: it waits, it does not overbook
    freed = shares[0]
    holders[0].stdin.close()  # that run ends: the waiting one takes its share
    assert share_of(waiting) == freed


def test_a_process_killed_with_sigkill_frees_its_share_at_once(tmp_path, holders):
    first = start_holder(["0"], 1, tmp_path)
    holders.append(first)
    assert share_of(first) == {"gpu": "0", "slot": 0, "runs_per_gpu": 1}
    second = start_holder(["0"], 1, tmp_path)
    holders.append(second)
    assert share_of(second, timeout=3) is None
    first.send_signal(signal.SIGKILL)  # no handler runs: the kernel drops the lock with the process
    assert share_of(second) == {"gpu": "0", "slot": 0, "runs_per_gpu": 1}


def test_runs_spread_over_every_gpu_before_sharing_one(tmp_path):
    held = [placement.claim(["a", "b", "c"], 4, tmp_path) for _ in range(3)]
    assert sorted(s.gpu for s in held) == ["a", "b", "c"] and {s.slot for s in held} == {0}
    fourth = placement.claim(["a", "b", "c"], 4, tmp_path)
    assert fourth.slot == 1
    for s in held + [fourth]:
        s.release()
    assert placement.try_claim(["a", "b", "c"], 4, tmp_path).describe() == {"gpu": "a", "slot": 0, "runs_per_gpu": 4}


def test_two_studies_share_one_lock_folder_per_user(tmp_path, monkeypatch):
    monkeypatch.delenv(placement.LOCK_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(placement.tempfile, "gettempdir", lambda: str(tmp_path))
    assert placement.lock_dir() == tmp_path / f"wscl-gpu-shares-{os.getuid()}"  # not a study's own folder


def test_the_gpus_are_those_cuda_visible_devices_grants(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-8be1,")
    assert placement.visible_gpus() == ["2", "GPU-8be1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # none granted
    assert placement.visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert placement.visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "NoDevFiles")  # what Slurm sets when it grants none
    assert placement.visible_gpus() == []


def test_a_run_with_its_own_device_or_without_gpus_claims_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(placement.LOCK_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert placement.place_run({"runtime": {"device": "cpu", "runs_per_gpu": 2}}) is None
    share = placement.place_run({"runtime": {"device": "auto", "runs_per_gpu": 2}}, log=lambda m: None)
    assert share.gpu == "0" and os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # the run sees its GPU only
    share.release()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert placement.place_run({"runtime": {"device": "auto", "runs_per_gpu": 2}}) is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # Slurm granted this job its GPU: every job sees it as 0
    assert placement.place_run({"runtime": {"device": "auto", "runs_per_gpu": 2}}) is None


def test_a_study_spreads_its_runs_over_every_gpu_k_per_gpu_without_device_ids(tmp_path):
    """The smoke study on a machine that shows two (fake) GPUs, one run per GPU: Snakemake gets gpu=2 shares
    without being told, each training job claims a share of its own and records it; CUDA itself is absent
    here, so the runs compute on the CPU (as a granted but unusable GPU does)."""
    from workflow_support import ENV, edit_smoke_config, metrics_path, snakemake, workflow_copy
    work = workflow_copy(tmp_path / "wf")
    edit_smoke_config(work, {"trainer.runtime.device": "auto", "trainer.runtime.runs_per_gpu": 1})
    env = {**ENV, "CUDA_VISIBLE_DEVICES": "0,1", placement.LOCK_DIR_VARIABLE: str(tmp_path / "locks")}
    done = snakemake(work, env=env)
    provided = next(line for line in done.stderr.splitlines() if "Provided resources" in line)
    assert re.search(r"\bgpu\W.*\b2\b", provided), provided  # 2 GPUs x 1 run each
    shares = [json.loads(metrics_path(work, preset, seed).read_text())["gpu_share"]
              for preset in ("base", "full") for seed in (0, 1)]
    assert all(s["slot"] == 0 and s["runs_per_gpu"] == 1 for s in shares)
    assert {s["gpu"] for s in shares} == {"0", "1"}  # the first two jobs start together: one on each GPU
    logs = " ".join(p.read_text() for p in (work / "results/logs/train").rglob("*.log"))
    assert logs.count("GPU share: GPU") == 4 and "on cpu, GPU" in logs
