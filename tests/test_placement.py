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
from wscl.settings.config import resolve

# A process that claims a share, reports it as one JSON line, then holds it until its stdin closes.
HOLDER = """
import json, sys
from pathlib import Path
from wscl.run import placement
gpus = [placement.Gpu(name, None) for name in sys.argv[1].split(",")]
share = placement.claim(gpus, int(sys.argv[2]), Path(sys.argv[3]))
print(json.dumps(share.describe()), flush=True)
sys.stdin.read()
"""


def runtime(device: str, runs_per_gpu: int):
    """A run's runtime section with this device and share count."""
    return resolve({"runtime": {"device": device, "runs_per_gpu": runs_per_gpu}}).runtime


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
    assert share_of(first) == {"gpu": "0", "uuid": None, "slot": 0, "runs_per_gpu": 1}
    second = start_holder(["0"], 1, tmp_path)
    holders.append(second)
    assert share_of(second, timeout=3) is None
    first.send_signal(signal.SIGKILL)  # no handler runs: the kernel drops the lock with the process
    assert share_of(second) == {"gpu": "0", "uuid": None, "slot": 0, "runs_per_gpu": 1}


def test_runs_spread_over_every_gpu_before_sharing_one(tmp_path):
    gpus = [placement.Gpu(name, None) for name in ("a", "b", "c")]
    held = [placement.claim(gpus, 4, tmp_path) for _ in range(3)]
    assert sorted(s.gpu.name for s in held) == ["a", "b", "c"] and {s.slot for s in held} == {0}
    fourth = placement.claim(gpus, 4, tmp_path)
    assert fourth.slot == 1
    for s in held + [fourth]:
        s.release()
    assert placement.try_claim(gpus, 4, tmp_path).describe() == {"gpu": "a", "uuid": None, "slot": 0,
                                                                 "runs_per_gpu": 4}


def test_two_studies_share_one_lock_folder_per_user(tmp_path, monkeypatch):
    monkeypatch.delenv(placement.LOCK_DIR_VARIABLE, raising=False)
    monkeypatch.setattr(placement.tempfile, "gettempdir", lambda: str(tmp_path))
    assert placement.lock_dir() == tmp_path / f"wscl-gpu-shares-{os.getuid()}"  # not a study's own folder


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """A machine without GPU tools: no nvidia-smi, no driver; the tests add fake ones."""
    monkeypatch.setattr(placement, "NVIDIA_SMI_QUERY", ["wscl-test-no-nvidia-smi", *placement.NVIDIA_SMI_QUERY[1:]])
    monkeypatch.setattr(placement, "DRIVER_FILES", (str(tmp_path / "no-driver"),))
    monkeypatch.setenv(placement.LOCK_DIR_VARIABLE, str(tmp_path / "locks"))
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def fake_nvidia_smi(folder, monkeypatch, rows: str) -> None:
    """An nvidia-smi on PATH that answers the query with ``rows`` (index, uuid, MIG mode)."""
    (folder / "bin").mkdir(exist_ok=True)
    script = folder / "bin/nvidia-smi"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = --query-gpu=index,uuid,mig.mode.current ] || exit 9\ncat <<'ROWS'\n"
                      f"{rows.strip()}\nROWS\n")
    script.chmod(0o755)
    monkeypatch.setattr(placement, "NVIDIA_SMI_QUERY", ["nvidia-smi", *placement.NVIDIA_SMI_QUERY[1:]])
    monkeypatch.setenv("PATH", f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}")


def fake_cuda(folder, monkeypatch, uuids: dict[str, str]) -> None:
    """A driver, and a child-process CUDA query that maps each CUDA_VISIBLE_DEVICES entry (all when unset) to
    the UUID torch would report for it."""
    (folder / "nvidiactl").touch()
    monkeypatch.setattr(placement, "DRIVER_FILES", (str(folder / "nvidiactl"),))
    code = (f"import json, os; u = {uuids!r}; v = os.environ.get('CUDA_VISIBLE_DEVICES'); "
            "print(json.dumps([u[e] for e in v.split(',')] if v is not None else list(u.values())))")
    monkeypatch.setattr(placement, "CUDA_QUERY", [sys.executable, "-c", code])


TWO_GPUS = """
0, GPU-aaaa1111-0000-0000-0000-000000000000, Disabled
1, GPU-bbbb2222-0000-0000-0000-000000000000, [N/A]
"""
A, B = "aaaa1111-0000-0000-0000-000000000000", "bbbb2222-0000-0000-0000-000000000000"


def test_the_gpus_are_those_cuda_visible_devices_grants(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, GPU-8be1,")
    assert [g.name for g in placement.visible_gpus()] == ["2", "GPU-8be1"]  # no tool lists them: named as given
    for none_granted in ("", "-1", "NoDevFiles"):  # NoDevFiles: what Slurm sets when it grants none
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", none_granted)
        assert placement.visible_gpus() == []


def test_a_gpu_named_by_index_or_by_uuid_is_one_lock(machine, monkeypatch):
    fake_nvidia_smi(machine, monkeypatch, TWO_GPUS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    held = placement.place_run(runtime("auto", 1), log=lambda m: None)
    assert held.describe()["uuid"] == A and os.environ["CUDA_VISIBLE_DEVICES"] == f"GPU-{A}"
    for same_gpu in (f"GPU-{A}", "GPU-AAAA1111", "1,0"):  # its UUID, a prefix of it (as CUDA accepts), a list
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", same_gpu)
        free = placement.try_claim(placement.visible_gpus(), 1, placement.lock_dir())
        assert free is None or free.gpu.uuid == B, same_gpu  # GPU 0 is held, whichever way it is named
        if free:
            free.release()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")  # every listed GPU, named by UUID
    assert [g.uuid for g in placement.visible_gpus()] == [A, B]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", f"0,GPU-{A}")  # one GPU named twice counts once
    assert [g.uuid for g in placement.visible_gpus()] == [A]
    held.release()


def test_without_nvidia_smi_gpus_are_counted_by_cuda_in_a_child_process(machine, monkeypatch):
    assert placement.visible_gpus() == []  # no driver: no child process, no GPU
    fake_cuda(machine, monkeypatch, {"0": f"GPU-{A}", "1": B})
    assert placement.visible_gpus() == [placement.Gpu("0", A), placement.Gpu("1", B)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")  # the child sees what the parent was granted
    assert placement.visible_gpus() == [placement.Gpu("1", B)]


def test_the_cuda_query_lists_what_torch_reports():
    import torch
    found = subprocess.run(placement.CUDA_QUERY, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == [str(torch.cuda.get_device_properties(i).uuid)
                                        for i in range(torch.cuda.device_count())]


def test_explicit_cuda_devices_go_through_the_shares(machine, monkeypatch):
    fake_nvidia_smi(machine, monkeypatch, TWO_GPUS)
    assert placement.place_run(runtime("cpu", 2)) is None
    cuda = placement.place_run(runtime("cuda", 1), log=lambda m: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    cfg = runtime("cuda:1", 1)
    second = placement.place_run(cfg, log=lambda m: None)
    assert (cuda.gpu.uuid, second.gpu.uuid) == (A, B)
    assert placement.device_in_share(cfg.device) == "cuda"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == f"GPU-{B}"  # that GPU only
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert placement.try_claim(placement.gpus_for("cuda:1"), 1, placement.lock_dir()) is None  # its K shares only
    assert placement.gpus_for("cuda:0") == [placement.Gpu(f"GPU-{A}", A)]
    with pytest.raises(placement.ConfigError, match=r"runtime.device='cuda:2' .* 2 GPU\(s\) \(cuda:0 .. cuda:1\)"):
        placement.gpus_for("cuda:2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU here: nothing to share, the trainer says why
    assert placement.gpus_for("cuda:1") == [] and placement.place_run(cfg) is None


def test_a_slurm_job_shares_its_granted_gpus_one_share_per_job_step(machine, monkeypatch):
    """The node lists four GPUs; the job was granted the last two, which it numbers 0 and 1: the UUIDs come
    from CUDA, so that the job's numbering is not mistaken for nvidia-smi's."""
    fake_nvidia_smi(machine, monkeypatch, "\n".join(f"{i}, GPU-{i}{i}{i}, Disabled" for i in range(4)))
    fake_cuda(machine, monkeypatch, {"0": "GPU-222", "1": "GPU-333"})
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    steps = []
    for _ in range(2):  # two job steps, each in its own process with the job's CUDA_VISIBLE_DEVICES
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        steps.append(placement.place_run(runtime("auto", 1), log=lambda m: None))
    assert [s.describe()["uuid"] for s in steps] == ["222", "333"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert placement.try_claim(placement.visible_gpus(), 1, placement.lock_dir()) is None  # K = 1: both held


def test_slurm_jobs_that_cannot_read_uuids_do_not_take_each_others_gpu_0(machine, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # each job numbers its own GPU 0; no tool lists them here
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    first = placement.place_run(runtime("auto", 1), log=lambda m: None)
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    second = placement.place_run(runtime("auto", 1), log=lambda m: None)
    assert first.gpu.key != second.gpu.key and first.gpu.name == second.gpu.name == "0"
    monkeypatch.delenv("SLURM_JOB_ID")  # a workstation's GPU 0 is the machine's
    assert placement.visible_gpus() == [placement.Gpu("0", None)]


def test_mig_instances_count_as_gpus_and_a_whole_gpu_in_mig_mode_is_refused(machine, monkeypatch):
    fake_nvidia_smi(machine, monkeypatch, f"0, GPU-{A}, Enabled\n1, GPU-{B}, Disabled")
    with pytest.raises(placement.ConfigError, match=r"GPU 0 .* is in MIG mode: .*nvidia-smi -L"):
        placement.visible_gpus()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert placement.visible_gpus() == [placement.Gpu(f"GPU-{B}", B)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-1111-aa,MIG-2222-bb")
    assert placement.visible_gpus() == [placement.Gpu("MIG-1111-aa", "1111-aa"),
                                        placement.Gpu("MIG-2222-bb", "2222-bb")]


def test_the_snakemake_gpu_resource_is_k_for_one_named_gpu(tmp_path):
    """cuda:1 on a machine that shows two (fake) GPUs: Snakemake counts that GPU's K shares, not 2 x K."""
    from workflow_support import ENV, edit_smoke_config, snakemake, workflow_copy
    work = workflow_copy(tmp_path / "wf")
    edit_smoke_config(work, {"trainer.runtime.device": "cuda:1", "trainer.runtime.runs_per_gpu": 3})
    done = snakemake(work, "results/mlflow/setup.json", env={**ENV, "CUDA_VISIBLE_DEVICES": "0,1"})
    provided = next(line for line in done.stderr.splitlines() if "Provided resources" in line)
    assert re.search(r"\bgpu\W.*\b3\b", provided), provided


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
