"""Runs per hour of K concurrent `wscl train` processes on one GPU, through the real GPU-share mechanism.

  python scripts/gpu/shares.py --out DIR --label no_mps [--k 1 2 4 8] [--quick] [--budget-s 120]

For each K, K processes of one small CIFAR-shaped synthetic run (base ER-ACE, fidelity reference, the same
seed in all: 32x32x3, width 64, 5 tasks x 2 classes, 1 epoch; ``--quick``: 16x16, width 8, fewer images)
start at once as a study's jobs do: ``runtime.device: auto``, ``--set runtime.runs_per_gpu=K``,
``CUDA_VISIBLE_DEVICES=0`` and a lock folder of their own (``WSCL_GPU_LOCK_DIR``), so that each claims
one of the K shares of GPU 0 (wscl/run/placement.py). Without CUDA the same processes claim their shares and
train on the CPU (a dry check of the mechanism, not a measurement).

Per K: the wall time from the launch to the last exit (``wall_seconds``; runs/hour = K x 3600 / it, process
start and CUDA set-up included), each run's own time (the phases of its metrics.json, ``run_seconds``),
and in-run runs/hour = K x 3600 / the longest run's time (the runs overlap nearly whole: they start
together). ``throughput_factor`` = in-run runs/hour at K / in-run runs/hour at K = 1 (F of
scripts/cost_estimate.py: what K runs sharing a GPU gain over one; long runs make process start
negligible); ``throughput_factor_with_start`` the same from the launch-to-exit wall times.

Writes DIR/shares_LABEL.json and, per run, DIR/shares/LABEL/kK/runI/metrics.json and its log; the run
folders (checkpoints, model.pt) stay in a temporary folder that is removed. A K whose expected time (the
previous K's wall x 2.5) exceeds what is left of ``--budget-s`` is skipped, and so recorded.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SIZES = {"full": {"per_class": {"train_per_class": 200, "test_per_class": 100, "dream_per_class": 20},
                  "width": 64, "image_size": 32, "val_per_task": 100},
         "quick": {"per_class": {"train_per_class": 80, "test_per_class": 20, "dream_per_class": 6},
                   "width": 8, "image_size": 16, "val_per_task": 20}}


def run_config(size: str) -> dict:
    from wscl.run.speed import ModelShape, Workload, synthetic_config
    s = SIZES[size]
    return synthetic_config("base", "auto", Workload(5, s["per_class"], val_per_task=s["val_per_task"], epochs=1),
                            ModelShape(s["width"], s["image_size"]), fidelity="reference")


def launch(k: int, cfg: dict, runs: Path, logs: Path, locks: Path, threads: int) -> list[tuple[subprocess.Popen, Path]]:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="0", WSCL_GPU_LOCK_DIR=str(locks), MLFLOW_TRACKING_URI="",
               PYTHONUNBUFFERED="1")
    procs = []
    for i in range(k):
        out = runs / f"k{k}" / f"run{i}"
        out.mkdir(parents=True)
        argv = [sys.executable, "-m", "wscl", "train", "--quiet", "--out", str(out),
                "--config-json", json.dumps(cfg.to_dict()), "--set", f"runtime.runs_per_gpu={k}",
                "--threads", str(threads), "--mlflow-uri", "none"]
        log = open(logs / f"k{k}_run{i}.log", "w")
        # in this process's group: a `timeout` that ends this script ends them too
        procs.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT), out))
        log.close()
    return procs


def batch(k: int, cfg: dict, runs: Path, logs: Path, kept: Path, threads: int, limit: float) -> dict:
    """K processes at once; their wall time, run times and shares."""
    locks = runs / f"locks{k}"
    locks.mkdir()
    start = time.perf_counter()
    procs = launch(k, cfg, runs, logs, locks, threads)
    codes = []
    for proc, _ in procs:
        try:
            codes.append(proc.wait(timeout=max(1.0, limit - (time.perf_counter() - start))))
        except subprocess.TimeoutExpired:
            proc.kill()
            codes.append(proc.wait())
    wall = time.perf_counter() - start
    out = {"k": k, "exit_codes": codes, "wall_seconds": round(wall, 3),
           "runs_per_hour": round(k * 3600 / wall, 2), "runs": []}
    for i, (_, folder) in enumerate(procs):
        metrics_file = folder / "metrics.json"
        if not metrics_file.exists():
            out["runs"].append(None)
            continue
        metrics = json.loads(metrics_file.read_text())
        target = kept / f"k{k}" / f"run{i}"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(metrics_file, target / "metrics.json")
        out["runs"].append({"run_seconds": round(sum(metrics["wall_seconds"].values()), 3),
                            "device": metrics["device"], "gpu_share": metrics.get("gpu_share"),
                            "train_images_per_second": metrics["train_images_per_second"],
                            "peak_device_memory_mb": metrics["peak_device_memory_mb"],
                            "class_il_final_avg_acc": metrics["class_il"]["final_avg_acc"]})
    done = [r for r in out["runs"] if r]
    out["ok"] = all(c == 0 for c in codes) and len(done) == k
    if out["ok"]:
        longest = max(r["run_seconds"] for r in done)
        out["in_run_runs_per_hour"] = round(k * 3600 / longest, 2)
        out["shares_distinct"] = len({json.dumps(r["gpu_share"], sort_keys=True) for r in done}) == k
    return out


def save(result: dict, path: Path) -> None:
    """The result with each K's throughput factors against K = 1."""
    alone = next((b for b in result["batches"] if b["k"] == 1 and b.get("ok")), None)
    for b in result["batches"]:
        if alone and b.get("ok"):
            b["throughput_factor"] = round(b["in_run_runs_per_hour"] / alone["in_run_runs_per_hour"], 3)
            b["throughput_factor_with_start"] = round(b["runs_per_hour"] / alone["runs_per_hour"], 3)
    path.write_text(json.dumps(result, indent=1))


def describe(b: dict, label: str) -> str:
    line = (f"K = {b['k']} ({label}): {'ok' if b['ok'] else 'FAILED, exit codes ' + str(b['exit_codes'])}, "
            f"wall {b['wall_seconds']:.1f} s, {b['runs_per_hour']:.0f} runs/hour")
    if b["ok"]:
        seconds = ", ".join(f"{r['run_seconds']:.1f}" for r in b["runs"])
        line += (f", in-run {b['in_run_runs_per_hour']:.0f} runs/hour (run times {seconds} s), "
                 f"shares distinct: {b['shares_distinct']}")
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for shares_LABEL.json and the runs' metrics")
    parser.add_argument("--label", default="no_mps", help="e.g. no_mps or mps (default: %(default)s)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="runs per GPU to measure")
    parser.add_argument("--quick", action="store_true", help="a tiny run (for a dry check on the CPU)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per process (default: %(default)s)")
    parser.add_argument("--budget-s", type=float, default=150.0, help="seconds for all K (default: %(default)s)")
    args = parser.parse_args(argv)
    size = "quick" if args.quick else "full"
    cfg = run_config(size)
    out = Path(args.out)
    kept, logs = out / "shares" / args.label, out / "logs" / "shares" / args.label
    logs.mkdir(parents=True, exist_ok=True)
    result = {"label": args.label, "size": size,
              "setup": {"image": [3, SIZES[size]["image_size"], SIZES[size]["image_size"]],
                        "width": SIZES[size]["width"], "tasks": 5, "epochs": 1, "preset": "base", "method": "er_ace",
                        "fidelity": "reference", "threads_per_process": args.threads, **SIZES[size]["per_class"]},
              "batches": []}
    started, previous = time.perf_counter(), None
    path = out / f"shares_{args.label}.json"
    with tempfile.TemporaryDirectory(prefix="wscl-shares-") as tmp:
        for k in args.k:
            left = args.budget_s - (time.perf_counter() - started)
            if previous is not None and previous * 2.5 > left or left < 5:
                result["batches"].append({"k": k, "skipped": f"out of time ({left:.0f} s left)"})
                print(f"K = {k}: skipped, {left:.0f} s left", flush=True)
                continue
            b = batch(k, cfg, Path(tmp), logs, kept, args.threads, left)
            result["batches"].append(b)
            previous = b["wall_seconds"]
            print(describe(b, args.label), flush=True)
            save(result, path)  # after every K: a script stopped by its timeout leaves what it measured
    save(result, path)
    print("throughput factor F (in-run; with process start) against K = 1: " + ", ".join(
        f"K = {b['k']}: {b['throughput_factor']:.2f}; {b['throughput_factor_with_start']:.2f}"
        for b in result["batches"] if "throughput_factor" in b) + f" -> {path}", flush=True)
    return 0 if all(b.get("ok") for b in result["batches"] if "skipped" not in b) else 1


if __name__ == "__main__":
    sys.exit(main())
