"""The GPU check (scripts/gpu/check.sh) in its dry mode on the CPU, as on the GPU machine: with mlflow,
snakemake and jsonschema unimportable, and within what that machine sends back (at most 8 files, none more
than 2 folders down, 16 MiB each)."""
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "scripts/gpu/check.sh"
MISSING_THERE = ("mlflow", "snakemake", "jsonschema")
MOST_VALUABLE_FIRST = ["environment", "bench_eager", "bench_compiled", "bench_compiled_no_graphs", "shares",
                       "train_authors_eager", "train_authors_compiled", "bench_eager_256", "shares_mps", "pytest_cuda",
                       "cost"]
LIMITS = {"files": 8, "folders_down": 2, "bytes": 16 * 2**20}


@pytest.fixture(scope="module")
def missing_packages(tmp_path_factory):
    """A folder that, first on PYTHONPATH, makes the packages the GPU machine lacks fail to import."""
    folder = tmp_path_factory.mktemp("gpu-machine-python")
    for name in MISSING_THERE:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name} is not installed here')\n")
    return folder


def gpu_machine_env(missing_packages: Path, **settings: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(missing_packages), "PYTHON": sys.executable, "DEVICE": "cpu",
            "QUICK": "1", **settings}


@pytest.fixture(scope="module")
def dry_run(missing_packages, tmp_path_factory):
    out, work = tmp_path_factory.mktemp("out"), tmp_path_factory.mktemp("work") / "check"
    started = time.monotonic()
    done = subprocess.run(["bash", str(CHECK)], env=gpu_machine_env(missing_packages, OUT=str(out), WORK=str(work)),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with tarfile.open(out / "gpu_check.tar.gz") as archive:
        members = {m.name.removeprefix("./"): archive.extractfile(m).read().decode()
                   for m in archive.getmembers() if m.isfile()}
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    return {"out": out, "seconds": time.monotonic() - started, "members": members, "steps": steps}


def test_what_comes_back_fits_the_gpu_machines_limits(dry_run):
    files = [p for p in dry_run["out"].rglob("*") if p.is_file() or p.is_symlink()]
    assert 0 < len(files) <= LIMITS["files"], files
    assert all(not p.is_symlink() and len(p.relative_to(dry_run["out"]).parts) - 1 <= LIMITS["folders_down"]
               for p in files)
    assert all(p.stat().st_size <= LIMITS["bytes"] for p in files)


def test_every_step_runs_or_is_recorded_in_order_and_the_archive_holds_its_result(dry_run):
    steps, members = dry_run["steps"], dry_run["members"]
    assert [s["step"] for s in steps] == MOST_VALUABLE_FIRST
    for s in steps:
        assert json.loads(members[f"steps/{s['step']}.json"]) == s
        if not s["status"].startswith("skipped"):
            assert f"logs/{s['step']}.log" in members, s
    assert members["steps.jsonl"] == (dry_run["out"] / "steps.jsonl").read_text()
    assert members["summary.txt"] == (dry_run["out"] / "summary.txt").read_text()


def test_the_steps_stay_within_their_limits_and_the_budget(dry_run):
    for s in dry_run["steps"]:
        assert s["seconds"] <= s["limit_s"] + 6, s  # `timeout -k 5` ends a step at its limit
    first = dry_run["members"]["summary.txt"].splitlines()[0]
    assert "BUDGET_S=55 (step limits 45 s)" in first, first
    assert dry_run["seconds"] < 55 + 20  # the budget, and the margin for packing and start-up


def test_no_step_needs_the_packages_the_gpu_machine_lacks(dry_run):
    logs = {name: text for name, text in dry_run["members"].items() if name.startswith("logs/")}
    assert "mlflow not importable" in logs["logs/environment.log"]  # the packages were missing indeed
    for name, text in logs.items():
        assert "is not installed here" not in text, f"{name} imports one of {MISSING_THERE}:\n{text[-2000:]}"


@pytest.mark.parametrize("quick", ["0", "1"])
def test_the_plan_leaves_a_margin_under_the_budget(quick, tmp_path):
    shown = subprocess.run(["bash", str(CHECK)], env={**os.environ, "QUICK": quick, "PLAN_ONLY": "1",
                                                      "OUT": str(tmp_path / "out")},
                           capture_output=True, text=True, check=True).stdout.splitlines()
    limits = dict(line.split() for line in shown[:-1])
    _, total, _, budget = shown[-1].split()
    assert list(limits) == MOST_VALUABLE_FIRST and sum(map(int, limits.values())) == int(total)
    assert int(total) <= 0.95 * int(budget) and not (tmp_path / "out").exists()
    if quick == "0":
        assert int(budget) <= 420  # the GPU machine ends a command after 8 minutes


def test_a_plan_over_its_budget_is_refused_before_any_step(missing_packages, tmp_path):
    done = subprocess.run(["bash", str(CHECK)], env=gpu_machine_env(missing_packages, BUDGET_S="30",
                                                                    OUT=str(tmp_path / "out")),
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not under BUDGET_S=30" in done.stderr and not (tmp_path / "out").exists()


def test_the_cuda_test_modules_import_without_those_packages(missing_packages):
    """check.sh runs `pytest -m cuda` on the modules that use the cuda mark: they must import there."""
    marked = re.compile(r"pytest\.mark\.cuda")  # the pattern check.sh greps for
    modules = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                     if marked.search(p.read_text()))
    assert "tests/test_cuda.py" in modules and "tests/test_gpu_check.py" not in modules
    env = {**os.environ, "PYTHONPATH": f"{missing_packages}{os.pathsep}{REPO}"}
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "cuda",
                                "-p", "no:cacheprovider", *modules], cwd=REPO, env=env, capture_output=True,
                               text=True)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]


def test_a_check_killed_midway_leaves_the_archive_of_every_step_that_ended(missing_packages, tmp_path):
    """The GPU machine may end the command at any moment: what ended before is already packed."""
    out = tmp_path / "out"
    check = subprocess.Popen(["bash", str(CHECK)], env=gpu_machine_env(missing_packages, OUT=str(out),
                                                                     WORK=str(tmp_path / "work")),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(read_lines(out / "steps.jsonl")) < 2:
            time.sleep(0.2)
    finally:
        os.killpg(check.pid, signal.SIGKILL)  # no handler runs: as a machine that takes itself back
        check.wait()
    ended = [json.loads(line)["step"] for line in read_lines(out / "steps.jsonl")]
    assert len(ended) >= 2, ended
    with tarfile.open(out / "gpu_check.tar.gz") as archive:
        packed = {m.name.removeprefix("./") for m in archive.getmembers()}
    assert {f"steps/{name}.json" for name in ended[:-1]} <= packed  # the last may have ended as it was killed
    assert "steps/environment.json" in packed and "logs/environment.log" in packed


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
