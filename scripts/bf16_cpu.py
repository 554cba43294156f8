"""The default study's corrected runs in fp32 and in bf16 on this CPU: wall time and accuracy, side by side.

  python scripts/bf16_cpu.py [--config config/config.yaml] [--out docs/figures/bf16_cpu.json] [--repeats 1]

Each corrected run of the study (its trainer configuration exactly as the workflow builds it) is trained by
``wscl train`` in a process of its own with ``runtime.bf16`` false, then true (alternating, so that a slower
moment of the machine hits both alike), one thread each, as the workflow's jobs. `runtime.bf16: auto` picks
bf16 on a CPU that reports AVX-512 BF16 or AMX (wscl/settings/runtime.py); this measures what that buys.
Needs the study's data prepared (`make run` or `wscl data prepare`). Prints a table and saves the JSON.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from wscl.core.provenance import cpu_description
from wscl.core.safe_io import atomic_write_json
from wscl.study.studies import Study


def train(cfg: dict, bf16: bool, out: Path) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wscl", "train", "--config-json", json.dumps(cfg), "--out", str(out),
                    "--threads", "1", "--quiet", "--mlflow-uri", "none", "--set", f"runtime.bf16={str(bf16).lower()}"],
                   check=True, capture_output=True)
    metrics = json.loads((out / "metrics.json").read_text())
    return time.perf_counter() - start, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--out", default="docs/figures/bf16_cpu.json")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    study = Study(yaml.safe_load(Path(args.config).read_text()))
    keys = [k for k in study.runs() if k.fidelity == "corrected"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            cfg = study.trainer_config(key)
            for repeat in range(args.repeats):
                for bf16 in (False, True):
                    folder = Path(tmp) / f"{key.group.replace('/', '_')}_{key.seed}_{bf16}_{repeat}"
                    seconds, m = train(cfg, bf16, folder)
                    rows.append({"run": f"{key.group}/seed{key.seed}", "bf16": bf16,
                                 "process_seconds": round(seconds, 2),
                                 "phase_seconds": round(sum(m["wall_seconds"].values()), 2),  # phases, summed
                                 "runtime_bf16": m["runtime"]["bf16"], "class_il": m["class_il"]["final_avg_acc"]})
                    print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for bf16 in (False, True):
        mine = [r for r in rows if r["bf16"] is bf16]
        summary["bf16" if bf16 else "fp32"] = {
            "process_seconds_total": round(sum(r["process_seconds"] for r in mine), 1),
            "class_il_mean": round(statistics.fmean(r["class_il"] for r in mine), 2)}
    summary["speedup"] = round(summary["fp32"]["process_seconds_total"] / summary["bf16"]["process_seconds_total"], 2)
    result = {"machine": cpu_description(), "config": args.config, "runs": rows, "summary": summary,
              "command": f"python scripts/bf16_cpu.py --config {args.config} --repeats {args.repeats}"}
    atomic_write_json(Path(args.out), result)
    print(f"{len(keys)} corrected runs on {result['machine']}: fp32 {summary['fp32']['process_seconds_total']} s, "
          f"bf16 {summary['bf16']['process_seconds_total']} s (x{summary['speedup']}); Class-IL mean "
          f"{summary['fp32']['class_il_mean']} vs {summary['bf16']['class_il_mean']} -> {args.out}")


if __name__ == "__main__":
    main()
