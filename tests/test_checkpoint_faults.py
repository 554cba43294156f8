"""The trainer's checkpoint faults end in one actionable line or a transparent recovery, and every recovery
ends with exactly the numbers of an uninterrupted run: a full disk while checkpointing, a truncated
checkpoint, a stop signal (SIGTERM, SIGUSR1) mid-epoch, and the timed mid-task checkpoint."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import numbers, tiny_config
from disk_faults import flip_middle_bytes

from wscl.cli import main
from wscl.core.errors import ExitCode
from wscl.core.safe_io import atomic_torch_save, mount_point
from wscl.method.learners import Learner
from wscl.run import checkpoint
from wscl.run.trainer import Run
from wscl.settings.config import fingerprint
from wscl.settings.runtime import resolve_runtime

# Two tasks of three epochs: task 1's epoch 0 is the freezing trial, so both kinds of epoch are crossed.
CFG = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 3})
RESUME = "rerun the same command: the run resumes from its last checkpoint"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The uninterrupted run's numbers."""
    return numbers(Run(CFG, tmp_path_factory.mktemp("reference"), quiet=True, log=lambda *_: None).run())


@pytest.fixture(autouse=True)
def no_mlflow(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def train(out: Path, cfg: dict = CFG) -> int:
    return main(["train", "--config-json", json.dumps(cfg.to_dict()), "--out", str(out), "--quiet"])


def finished(out: Path) -> dict:
    return numbers(json.loads((out / "metrics.json").read_text()))


def saved(out: Path) -> dict:
    return torch.load(out / checkpoint.FILE_NAME, weights_only=False)


def stop_after_save(monkeypatch, when):
    """Interrupt the run (KeyboardInterrupt) right after the first checkpoint whose position satisfies ``when``."""
    original = checkpoint.save

    def save(state, path, fp, position=None):
        original(state, path, fp, position)
        if when(state, position):
            raise KeyboardInterrupt
    monkeypatch.setattr(checkpoint, "save", save)
    return original


def test_checkpoint_every_minutes_leaves_the_fingerprint_alone():
    runtime = resolve_runtime(CFG).describe()
    other = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 3}, runtime={"checkpoint_every_minutes": 0.5})
    assert fingerprint(CFG, runtime) == fingerprint(other, runtime)


# -- a full disk ---------------------------------------------------------------------------------------

def test_a_full_disk_while_checkpointing_is_one_line_and_a_rerun_after_freeing_space_resumes(disk, capsys,
                                                                                             reference):
    """The 1.5 MB disk holds one checkpoint (~0.8 MB) but not the next one beside it."""
    out = disk.path / "run"
    assert train(out) == ExitCode.WRITE_FAILED
    err = capsys.readouterr().err.strip()
    assert err == (f"wscl train: error: cannot write {out / checkpoint.FILE_NAME}: the disk is full; free space "
                   f"under {mount_point(out)} and {RESUME}")
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert saved(out)["state"]["next_task"] == 1  # the first task's checkpoint is intact
    disk.resize(4000)
    assert train(out) == 0
    assert f"resuming {out} after task 1 of 2" in capsys.readouterr().out
    assert finished(out) == reference
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "checkpoint.pt.sha256", "metrics.json",
                                                     "metrics.json.sha256", "model.pt", "model.pt.sha256",
                                                     "resolved_config.yaml", "resolved_config.yaml.sha256"]


# -- a corrupt checkpoint --------------------------------------------------------------------------------

def test_a_truncated_checkpoint_is_moved_aside_and_the_run_resumes_from_the_previous_one(tmp_path, monkeypatch,
                                                                                         capsys, reference):
    out = tmp_path / "run"
    original = stop_after_save(monkeypatch, lambda state, position: state.next_task == 2)
    with pytest.raises(KeyboardInterrupt):
        Run(CFG, out, quiet=True, log=lambda *_: None).run()
    monkeypatch.setattr(checkpoint, "save", original)
    path = out / checkpoint.FILE_NAME
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert train(out) == 0
    log = capsys.readouterr().out.splitlines()
    aside, seal = sorted(p.name for p in out.glob("checkpoint.pt.corrupt-*"))
    assert re.fullmatch(r"checkpoint\.pt\.corrupt-\d{8}-\d{6}", aside)
    assert seal == f"{aside}.sha256"  # its digest moved aside with it
    assert log[0] == (f"{path} cannot be read (differs from its digest in checkpoint.pt.sha256 (changed on disk "
                      f"since it was written)); moved aside to {aside}")
    assert log[1:3] == ["resuming from the previous checkpoint checkpoint.prev.pt instead",
                        f"resuming {out} after task 1 of 2"]
    assert finished(out) == reference


@pytest.mark.parametrize("damaged", [["checkpoint.pt"], ["checkpoint.pt", "checkpoint.prev.pt"]])
def test_a_changed_byte_in_a_checkpoint_of_unchanged_size_is_caught_and_the_run_ends_as_uninterrupted(
        tmp_path, monkeypatch, capsys, reference, damaged):
    out = tmp_path / "run"
    original = stop_after_save(monkeypatch, lambda state, position: state.next_task == 2)
    with pytest.raises(KeyboardInterrupt):
        Run(CFG, out, quiet=True, log=lambda *_: None).run()
    monkeypatch.setattr(checkpoint, "save", original)
    for name in damaged:
        flip_middle_bytes(out / name)
    assert train(out) == 0
    log = capsys.readouterr().out
    assert f"{out / 'checkpoint.pt'} cannot be read (differs from its digest" in log
    if len(damaged) == 1:
        assert "resuming from the previous checkpoint checkpoint.prev.pt instead" in log
    else:
        assert f"no readable checkpoint is left in {out}; starting this run from task 1" in log
    assert finished(out) == reference


def test_with_no_readable_checkpoint_the_run_says_it_starts_from_scratch(tmp_path):
    run, log = Run(CFG, tmp_path, quiet=True, log=lambda *_: None), []
    untouched = run.state.state_dict()["next_task"]
    (tmp_path / checkpoint.FILE_NAME).write_bytes(b"PK\x03\x04 not a whole zip archive")
    assert checkpoint.restore(run.state, tmp_path / checkpoint.FILE_NAME, run.fingerprint, run.device,
                              log.append) is None
    assert run.state.next_task == untouched and not (tmp_path / checkpoint.FILE_NAME).exists()
    assert len(list(tmp_path.glob("checkpoint.pt.corrupt-*"))) == 1
    assert log[-1] == f"no readable checkpoint is left in {tmp_path}; starting this run from task 1"


def test_a_checkpoint_whose_tensors_do_not_fit_is_moved_aside_before_anything_is_loaded(tmp_path):
    run, log = Run(CFG, tmp_path, quiet=True, log=lambda *_: None), []
    state = run.state.state_dict()
    state["learner"]["seen_heads"] = torch.zeros(3, dtype=torch.bool)
    atomic_torch_save({"fingerprint": run.fingerprint, "state": state}, tmp_path / checkpoint.FILE_NAME, sealed=True)
    assert checkpoint.restore(run.state, tmp_path / checkpoint.FILE_NAME, run.fingerprint, run.device,
                              log.append) is None
    assert "state.learner.seen_heads has shape (3,)" in log[0] and "moved aside" in log[0]


# -- stop signals and mid-task checkpoints ---------------------------------------------------------------

def test_sigusr1_mid_epoch_checkpoints_at_the_next_step_exits_75_and_resumes_exactly(tmp_path, monkeypatch,
                                                                                     capsys, reference):
    """The signal arrives during the 14th training step (task 1, wake epoch 1); the run pauses after it."""
    calls, observe = [], Learner.observe

    def observe_and_signal(self, *args):
        calls.append(1)
        if len(calls) == 14:
            os.kill(os.getpid(), signal.SIGUSR1)
        return observe(self, *args)
    monkeypatch.setattr(Learner, "observe", observe_and_signal)
    before = signal.getsignal(signal.SIGUSR1)
    out = tmp_path / "run"
    assert train(out) == ExitCode.REQUEUE
    assert signal.getsignal(signal.SIGUSR1) == before  # the CLI's handler is gone again
    err = capsys.readouterr().err.strip()
    position = saved(out)["position"]
    assert position["task"] == 0 and position["epoch"] == 1 and position["step"] > 0
    assert err == (f"wscl train: error: stopped by SIGUSR1: checkpoint {out / checkpoint.FILE_NAME} written inside "
                   f"task 1 of 2 (wake epoch 2, step {position['step']}); {RESUME}")
    monkeypatch.setattr(Learner, "observe", observe)
    assert train(out) == 0
    assert f"resuming {out} inside task 1 of 2 (wake epoch 2, step {position['step']})" in capsys.readouterr().out
    assert finished(out) == reference


def test_a_timed_checkpoint_at_a_wake_epoch_boundary_resumes_exactly(tmp_path, monkeypatch, reference):
    """With a clock that passes a minute per call, every wake-epoch boundary is due; the run is interrupted
    after task 2's last one (wake done), so the resumed run goes straight to sleep."""
    positions = []
    original = stop_after_save(monkeypatch, lambda state, position: positions.append(position)
                    or (position is not None and position["task"] == 1 and position["epoch"] == 3))
    ticks = iter(range(0, 10**6, 60))
    cfg = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 3}, runtime={"checkpoint_every_minutes": 1})
    run = Run(cfg, tmp_path, quiet=True, log=lambda *_: None)
    run.checkpoints.clock = lambda: next(ticks)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    # task 0: epochs 1, 2, 3 end; task 0's end; task 1: the trial (epoch 1), epochs 2, 3 end
    assert [(p["task"], p["epoch"], p["step"]) if p else None for p in positions] == \
        [(0, 1, 0), (0, 2, 0), (0, 3, 0), None, (1, 1, 0), (1, 2, 0), (1, 3, 0)]
    monkeypatch.setattr(checkpoint, "save", original)
    log = []
    resumed = Run(CFG, tmp_path, quiet=True, log=log.append).run()  # the default interval: same fingerprint
    assert log == [f"resuming {tmp_path} inside task 2 of 2 (wake done)"]
    assert numbers(resumed) == reference


def test_sigterm_to_a_training_process_requeues_and_the_rerun_ends_with_the_uninterrupted_numbers(tmp_path,
                                                                                                 reference):
    """A real `wscl train` process gets SIGTERM once its progress bar shows wake epoch 2 of task 1."""
    out = tmp_path / "run"
    cfg = tiny_config(scenario={"n_tasks": 2}, training={"epochs": 3}, runtime={"progress": True})
    args = [sys.executable, "-m", "wscl", "train", "--config-json", json.dumps(cfg.to_dict()), "--out", str(out)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": "", "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.time() + 300
    while b"task 1/2 wake epoch 2/3" not in seen and time.time() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == ExitCode.REQUEUE, (seen + err).decode()[-2000:]
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith("wscl train: error: stopped by SIGTERM: checkpoint ") and last.endswith(RESUME)
    position = saved(out)["position"]
    assert position is not None and position["task"] == 0  # inside the first task
    assert not (out / "metrics.json").exists()
    assert train(out) == 0
    assert finished(out) == reference
