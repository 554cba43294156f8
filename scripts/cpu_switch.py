"""The default study's corrected runs with one runtime switch off and on, on this CPU: wall time and accuracy.

  python scripts/cpu_switch.py --setting runtime.bf16 [--config config/config.yaml] [--out FILE] [--repeats 1]
  python scripts/cpu_switch.py --setting runtime.compile --runs 1 --preset base --preset full [--out FILE]
  python scripts/cpu_switch.py --table docs/figures/bf16_cpu_intel_amx.json [--doc docs/performance.md [--check]]

Each corrected run of the study (its trainer configuration exactly as the workflow builds it) is trained by
``wscl train`` in a process of its own with the setting false, then true (alternating, so that a slower
moment of the machine hits both alike), one thread each, as the workflow's jobs. ``--runs N``: the first N
corrected runs (seeds) of each preset only; ``--preset``: those presets only. For ``runtime.compile`` the
compiled runs share one inductor cache folder that starts
empty, so the totals count every compile a study would pay (the first run compiles, the next reuse the
kernels). Needs the study's data prepared (`make run` or `wscl data prepare`). Prints a table and saves the JSON
with the machine and the commit. ``--table FILE`` writes the table of a saved JSON: printed, or with ``--doc``
between the file's markers in that page (docs/performance.md; ``--check``: tests/test_figures.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from wscl.core.provenance import cpu_description, git_commit
from wscl.core.safe_io import atomic_write_json
from wscl.study.snapshot import mean_sd, write_doc_table
from wscl.study.studies import Study


def train(cfg: dict, setting: str, on: bool, out: Path, env: dict) -> tuple[float, dict]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "wscl", "train", "--config-json", json.dumps(cfg), "--out", str(out),
                    "--threads", "1", "--quiet", "--mlflow-uri", "none", "--set", f"{setting}={str(on).lower()}"],
                   check=True, capture_output=True, env=env)
    metrics = json.loads((out / "metrics.json").read_text())
    return time.perf_counter() - start, metrics


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for on in (False, True):
        mine = [r for r in rows if r["on"] is on]
        summary["on" if on else "off"] = {
            "process_seconds_total": round(sum(r["process_seconds"] for r in mine), 1),
            "class_il_mean": round(statistics.fmean(r["class_il"] for r in mine), 2)}
    summary["speedup"] = round(summary["off"]["process_seconds_total"] / summary["on"]["process_seconds_total"], 2)
    return summary


def _switched_on(row: dict) -> bool:
    return row["on"] if "on" in row else row["bf16"]  # files saved before the script took --setting say "bf16"


def table(result: dict, source: str) -> str:
    """The saved runs per preset, setting off against on: the processes' seconds summed and Class-IL mean ± sd;
    between markers named after the file, with its machine and commit."""
    name = result.get("setting", "runtime.bf16").split(".")[1]
    labels = ("fp32", "bf16") if name == "bf16" else ("eager", "compiled")
    presets = list(dict.fromkeys(row["run"].split("/")[3] for row in result["runs"]))
    commit = result.get("git_commit")
    lines = [f"<!-- {Path(source).stem}: begin (written by `python scripts/cpu_switch.py --table {source} --doc "
             f"FILE`; do not edit) -->",
             f"{result['machine']}, " + (f"commit `{commit[:10]}`" if commit else "a commit it did not record") + ":",
             "", f"| preset ({len(result['runs']) // 2 // len(presets)} seeds) | {labels[0]}: seconds, Class-IL | "
             f"{labels[1]}: seconds, Class-IL |", "|---|---|---|"]
    totals = [sum(row["process_seconds"] for row in result["runs"] if _switched_on(row) is on) for on in (False, True)]
    for preset in presets:
        cells = []
        for on in (False, True):
            mine = [row for row in result["runs"] if row["run"].split("/")[3] == preset and _switched_on(row) is on]
            cells.append(f"{sum(row['process_seconds'] for row in mine):.1f} s, "
                         f"{mean_sd(row['class_il'] for row in mine)}")
        lines.append(f"| `{preset}` | {cells[0]} | {cells[1]} |")
    lines.append(f"| all {len(result['runs']) // 2} | **{totals[0]:.1f} s** | **{totals[1]:.1f} s "
                 f"({totals[0] / totals[1]:.2f}x)** |")
    return "\n".join(lines + [f"<!-- {Path(source).stem}: end -->"])


def write_table(source: str, doc: str | None, check: bool) -> int:
    return write_doc_table(table(json.loads(Path(source).read_text()), source), source, doc, check)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="a saved JSON: write its table instead of measuring")
    parser.add_argument("--doc", help="with --table: the page whose block to rewrite (default: print)")
    parser.add_argument("--check", action="store_true", help="with --doc: write nothing; exit 1 if it differs")
    parser.add_argument("--setting", choices=["runtime.bf16", "runtime.compile"])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--out", help="default: docs/figures/<setting>_cpu.json")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--runs", type=int, help="the first N corrected runs (of each --preset) only")
    parser.add_argument("--preset", action="append", help="only this preset's runs (repeatable)")
    args = parser.parse_args()
    if args.table:
        sys.exit(write_table(args.table, args.doc, args.check))
    if not args.setting:
        parser.error("--setting is needed to measure (or --table FILE to write a saved file's table)")
    name = args.setting.split(".")[1]
    out = Path(args.out or f"docs/figures/{name}_cpu.json")
    study = Study(yaml.safe_load(Path(args.config).read_text()))
    corrected = [k for k in study.runs() if k.fidelity == "corrected"]
    presets = args.preset or list(dict.fromkeys(k.preset for k in corrected))
    keys = [k for p in presets for k in [k for k in corrected if k.preset == p][: args.runs]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor-cache"))  # empty at the start
        for key in keys:
            cfg = study.trainer_config(key)
            for repeat in range(args.repeats):
                for on in (False, True):
                    folder = Path(tmp) / f"{key.group.replace('/', '_')}_{key.seed}_{on}_{repeat}"
                    seconds, m = train(cfg, args.setting, on, folder, env)
                    rows.append({"run": f"{key.group}/seed{key.seed}", "on": on,
                                 "process_seconds": round(seconds, 2),
                                 "phase_seconds": round(sum(m["wall_seconds"].values()), 2),  # phases, summed
                                 "runtime": m["runtime"], "compile": m.get("compile"),
                                 "class_il": m["class_il"]["final_avg_acc"]})
                    print(json.dumps(rows[-1]), flush=True)
    summary = summarise(rows)
    runs = (f" --runs {args.runs}" if args.runs else "") + "".join(f" --preset {p}" for p in args.preset or [])
    result = {"machine": cpu_description(), "git_commit": git_commit(), "config": args.config,
              "setting": args.setting, "runs": rows,
              "summary": summary,
              "command": f"python scripts/cpu_switch.py --setting {args.setting} --config {args.config} "
                         f"--repeats {args.repeats}{runs}"}
    atomic_write_json(out, result)
    print(f"{len(keys)} corrected runs on {result['machine']}: {args.setting} off "
          f"{summary['off']['process_seconds_total']} s, on {summary['on']['process_seconds_total']} s "
          f"(x{summary['speedup']}); Class-IL mean {summary['off']['class_il_mean']} vs "
          f"{summary['on']['class_il_mean']} -> {out}")


if __name__ == "__main__":
    main()
