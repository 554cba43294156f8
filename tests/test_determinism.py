import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import numbers

from wscl.method import sleep
from wscl.run.trainer import Run


def test_same_seed_same_numbers_different_seed_different_numbers(tiny, tmp_path):
    a = Run(tiny(), tmp_path / "a", quiet=True, log=lambda *_: None).run()
    b = Run(tiny(), tmp_path / "b", quiet=True, log=lambda *_: None).run()
    c = Run(tiny(seed=1), tmp_path / "c", quiet=True, log=lambda *_: None).run()
    assert numbers(a) == numbers(b)
    assert a["class_il"]["accuracy_matrix"] != c["class_il"]["accuracy_matrix"]


def test_resume_after_a_crash_gives_the_uninterrupted_numbers(tiny, tmp_path, monkeypatch):
    reference = Run(tiny(), tmp_path / "ref", quiet=True, log=lambda *_: None).run()
    original = sleep.sleep_phase

    def crash_in_task_2(night, *args):
        if night.task == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(night, *args)

    monkeypatch.setattr(sleep, "sleep_phase", crash_in_task_2)
    with pytest.raises(KeyboardInterrupt):
        Run(tiny(), tmp_path / "run", quiet=True, log=lambda *_: None).run()
    assert not (tmp_path / "run" / "metrics.json").exists()
    monkeypatch.setattr(sleep, "sleep_phase", original)
    log = []
    resumed = Run(tiny(), tmp_path / "run", quiet=True, log=log.append)
    result = resumed.run()
    assert any("resuming" in line and "after task 2" in line for line in log)
    assert numbers(result) == numbers(reference)


def test_checkpoint_of_another_config_is_not_resumed(tiny, tmp_path):
    Run(tiny(), tmp_path, quiet=True, log=lambda *_: None).run()
    log = []
    Run(tiny(training={"lr": 0.05}), tmp_path, quiet=True, log=log.append).run()
    assert any("different configuration" in line for line in log)


def test_killed_cli_process_resumes_to_identical_metrics(tmp_path):
    args = [sys.executable, "-m", "wscl", "train", "--dataset", "synthetic", "--preset", "full", "--quiet",
            "--set", "runtime.device=cpu", "--set", "scenario.n_tasks=3", "--set", "dataset.synthetic.classes=6",
            "--set", "dataset.synthetic.train_per_class=150", "--set", "model.width=8"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    subprocess.run(args + ["--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    done = subprocess.run(args + ["--out", str(out)], env=env, capture_output=True, text=True, check=True)
    assert "resuming" in done.stdout + done.stderr
    a = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    b = json.loads((out / "metrics.json").read_text())
    assert numbers(a) == numbers(b)
