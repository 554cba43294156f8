"""The Snakemake workflow end to end on config/smoke.yaml, in a temporary copy of the workflow."""
import json
import shutil
import subprocess
import sys
import time

import psutil
import yaml
from disk_faults import flip_middle_bytes
from mlflow.tracking import MlflowClient
from workflow_support import BIN, ENV, assert_run_holds_metrics, job_counts, metrics_path, snakemake, workflow_copy
from workflow_support import SMOKE_RUNS as RUNS

from wscl.study.outputs import COMPARISONS, PLOTS


def test_smoke_study_produces_tables_plots_report_and_archive(smoke):
    results = smoke / "results"
    for ext in ("csv", "md", "tex"):
        assert (results / f"tables/synthetic_buffer20.{ext}").stat().st_size > 0
    table = (results / "tables/synthetic_buffer20.md").read_text()
    assert "er_ace" in table and "full" in table and "base" in table and "reference" in table
    for plot in (*PLOTS, COMPARISONS):
        assert (results / f"plots/synthetic_buffer20_{plot}.png").read_bytes()[:4] == b"\x89PNG"
    report = (results / "report.html").read_text()
    assert report.count("<img") == len(PLOTS) + 1 and "Fidelity: <b>reference</b>" in report
    archive = results / "archive/smoke.tar.gz"
    verified = subprocess.run([sys.executable, "-m", "wscl", "verify-archive", str(archive)], capture_output=True,
                              text=True, env=ENV)
    assert verified.returncode == 0, verified.stdout
    for preset, seed in RUNS:
        assert metrics_path(smoke, preset, seed).exists()
        assert (results / f"logs/train/synthetic/buffer20/er_ace/{preset}/reference/seed{seed}.log").exists()
        assert (results / f"job_usage/train/synthetic/buffer20/er_ace/{preset}/reference/seed{seed}.tsv").exists()


def test_mlflow_holds_every_run_with_its_metrics(smoke):
    client = MlflowClient(tracking_uri=f"sqlite:///{smoke / 'results/mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id])
    parents = {r.data.tags["wscl.group"]: r for r in runs if "wscl.group" in r.data.tags}
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert set(parents) == {"synthetic/buffer20/er_ace/base/reference", "synthetic/buffer20/er_ace/full/reference"}
    assert len(children) == len(RUNS)  # four jobs ran in parallel (--cores 4): none lost, none doubled
    for child in children:
        preset, seed = child.data.tags["preset"], int(child.data.tags["seed"])
        parent = parents[f"synthetic/buffer20/er_ace/{preset}/reference"]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert_run_holds_metrics(client, child, json.loads(metrics_path(smoke, preset, seed).read_text()))


def test_second_invocation_does_nothing(smoke):
    done = snakemake(smoke, "all", "archive", "-n")
    assert "Nothing to be done" in done.stdout + done.stderr


def test_changing_one_preset_parameter_reruns_exactly_its_jobs(smoke, tmp_path):
    workdir = workflow_copy(tmp_path / "changed")
    shutil.copytree(smoke / "results", workdir / "results")
    shutil.copytree(smoke / ".snakemake", workdir / ".snakemake")
    config = yaml.safe_load((workdir / "config/smoke.yaml").read_text())
    config["overrides"][0]["trainer"]["wscl"]["nrem"]["epochs"] = 2  # the override that matches preset `full`
    (workdir / "config/smoke.yaml").write_text(yaml.safe_dump(config))
    planned = job_counts(snakemake(workdir, "all", "archive", "-n").stdout)
    assert planned == {"train": 2, "aggregate": 1, "report": 1, "archive": 1, "mlflow_sync": 1, "all": 1}
    before = {run: metrics_path(workdir, *run).stat().st_mtime_ns for run in RUNS}
    snakemake(workdir, "all", "archive")
    for preset, seed in RUNS:
        changed = metrics_path(workdir, preset, seed).stat().st_mtime_ns != before[(preset, seed)]
        assert changed == (preset == "full")
    resolved = yaml.safe_load((metrics_path(workdir, "full", 0).parent / "resolved_config.yaml").read_text())
    assert resolved["wscl"]["nrem"]["epochs"] == 2


def test_a_damaged_metrics_file_stops_the_study_naming_it_and_its_rewrite_restores_the_run(smoke, tmp_path):
    """A metrics.json changed on disk: the MLflow sync, the first step after training, fails naming the file
    and what to do, and no table is made from it; doing it (delete, rerun the workflow) resumes the finished
    run from its checkpoint and writes the same numbers again."""
    from conftest import numbers
    workdir = workflow_copy(tmp_path / "damaged")
    shutil.copytree(smoke / "results", workdir / "results")
    shutil.copytree(smoke / ".snakemake", workdir / ".snakemake")
    damaged = metrics_path(workdir, "full", 1)
    original = json.loads(damaged.read_text())
    flip_middle_bytes(damaged, n=8)  # what a disk does: the size unchanged
    table = workdir / "results/tables/synthetic_buffer20.csv"
    table_written = table.stat().st_mtime_ns
    failed = snakemake(workdir, "all", check=False)
    assert failed.returncode != 0
    assert table.stat().st_mtime_ns == table_written
    log = (workdir / "results/logs/mlflow_sync.log").read_text()
    assert f"{damaged.relative_to(workdir)} differs from its digest in metrics.json.sha256" in log
    assert "delete it and rerun the workflow" in log
    assert "Traceback" not in log
    damaged.unlink()
    assert job_counts(snakemake(workdir, "all", "-n").stdout)["train"] == 1
    snakemake(workdir, "all")
    assert numbers(json.loads(damaged.read_text())) == numbers(original)


def test_interrupted_training_job_resumes_from_its_checkpoint(tmp_path):
    workdir = workflow_copy(tmp_path / "interrupt")
    config = yaml.safe_load((workdir / "config/smoke.yaml").read_text())
    config["trainer"]["scenario"]["n_tasks"] = 2
    config["trainer"]["training"]["epochs"] = 6  # long enough to be caught after its first checkpoint
    (workdir / "config/smoke.yaml").write_text(yaml.safe_dump(config))
    target = "results/runs/synthetic/buffer20/er_ace/full/reference/seed0/metrics.json"
    cmd = [str(BIN / "snakemake"), "--configfile", "config/smoke.yaml", "--cores", "1", target]
    proc = subprocess.Popen(cmd, cwd=workdir, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = "results/runs/synthetic/buffer20/er_ace/full/reference/seed0"
    checkpoint = workdir / run_dir / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be interrupted"
    # The training process dies mid-task (as a preempted or killed job does); the workflow reports it failed.
    # Only this test's trainer: other workflows on the machine may train a folder of the same name.
    trainers = [p for p in psutil.process_iter(["cmdline", "cwd"])
                if "train" in (p.info["cmdline"] or []) and run_dir in " ".join(p.info["cmdline"] or [])
                and p.info["cwd"] == str(workdir)]
    assert trainers, "no training process found"
    for trainer in trainers:
        trainer.kill()
    assert proc.wait(timeout=120) != 0
    assert not (workdir / target).exists()
    snakemake(workdir, target, "--rerun-incomplete")
    log = (workdir / "results/logs/train/synthetic/buffer20/er_ace/full/reference/seed0.log").read_text()
    assert "resuming" in log and "after task 1 of 2" in log
    metrics = json.loads((workdir / target).read_text())
    assert len(metrics["tasks"]) == 2 and metrics["class_il"]["accuracy_matrix"][1][0] is not None


def test_paper_config_plans_every_job_without_data(tmp_path):
    workdir = workflow_copy(tmp_path / "paper")
    done = subprocess.run([str(BIN / "snakemake"), "-n", "--configfile", "config/paper.yaml"], cwd=workdir,
                          env=ENV, capture_output=True, text=True, check=True)
    counts = job_counts(done.stdout)
    # 4 benchmarks x 2 buffers x (3 methods x 3 presets + 5 buffered ablations) x 5 seeds, plus the
    # buffer-free wake_rem once per benchmark x 5 seeds.
    assert counts["train"] == 4 * 2 * (3 * 3 + 5) * 5 + 4 * 5
    assert counts["prepare_dataset"] == 4 and counts["mlflow_setup"] == 1
    assert not (workdir / "data").exists()


def test_config_typo_fails_at_start_naming_the_key(tmp_path):
    workdir = workflow_copy(tmp_path / "typo")
    config = yaml.safe_load((workdir / "config/smoke.yaml").read_text())
    config["seedz"] = config.pop("seeds")
    (workdir / "config/smoke.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir, "-n", check=False)
    assert done.returncode != 0 and "seedz" in done.stdout + done.stderr
    config["seeds"] = config.pop("seedz")
    config["trainer"]["training"]["lrr"] = 0.1
    (workdir / "config/smoke.yaml").write_text(yaml.safe_dump(config))
    done = snakemake(workdir, "-n", check=False)
    assert done.returncode != 0 and "training.lrr" in done.stdout + done.stderr
