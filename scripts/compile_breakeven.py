"""Where compiling the training steps would pay on this CPU: a run's cost split into what compiling saves per
step and what it costs per process.

  python scripts/compile_breakeven.py [--config config/config.yaml] [--preset base --preset full ...] [--out FILE]
  python scripts/compile_breakeven.py --table FILE.json [--doc docs/performance.md [--check]]

For the first corrected run (seed) of each preset of the study, trained by ``wscl train``'s code with the
workflow's configuration, one thread, on this machine:

- eager: a new process trains the run twice (the second time nothing is imported or loaded anew);
- compiled, empty cache: a new process with an empty inductor cache trains it once (every compile paid);
- compiled, warm cache: a new process finds that cache and trains it twice: the first time it traces and
  loads the compiled code again (what each of a study's runs pays, one process per run), the second time
  it pays nothing but the compiled steps.

The second runs of a process are the bound of what compiling can give (the steps alone); the first runs
are what a study of one process per run gets. Prints a table and saves the JSON with the machine and the
commit. ``--table FILE`` writes the table of a saved JSON: printed, or with ``--doc`` between the page's
markers (docs/performance.md; ``--check``: tests/test_figures.py). Needs the study's data prepared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from wscl.core.provenance import cpu_description, git_commit
from wscl.core.safe_io import atomic_write_json
from wscl.study.snapshot import wrapped, write_doc_table
from wscl.study.studies import Study

# (arm, runtime.compile, runs in the process, the cache the process starts with)
ARMS = (("eager", False, 2, "empty"), ("compiled", True, 1, "empty"), ("compiled", True, 2, "warm"))


def train_in_one_process(cfg: dict, compile_on: bool, runs: int, folder: Path, env: dict) -> list[dict]:
    """``runs`` trainings of ``cfg`` in one new process: per training its seconds (the first counting the
    process's start), its phases' seconds, compile counts and Class-IL."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(cfg), str(folder), str(compile_on).lower(),
                           str(runs)], check=True, capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    rows[0]["seconds"] = round(time.perf_counter() - start - sum(r["seconds"] for r in rows[1:]), 2)
    return rows


def child(cfg: str, folder: str, compile_on: str, runs: int) -> None:
    """Runs in the measured process: the same training ``runs`` times, one JSON line each."""
    from wscl.cli import main
    for i in range(runs):
        start, out = time.perf_counter(), Path(folder) / f"run{i}"
        main(["train", "--config-json", cfg, "--out", str(out), "--threads", "1", "--quiet", "--mlflow-uri", "none",
              "--set", f"runtime.compile={compile_on}"])
        m = json.loads((out / "metrics.json").read_text())
        print(json.dumps({"seconds": round(time.perf_counter() - start, 2),
                          "phases": {k: round(v, 2) for k, v in m["wall_seconds"].items()},
                          "compile": m["compile"], "runtime": {k: m["runtime"].get(k) for k in ("bf16", "device")},
                          "class_il": m["class_il"]["final_avg_acc"]}), flush=True)


def measure(config: str, presets: list[str] | None) -> dict:
    study = Study(yaml.safe_load(Path(config).read_text()))
    corrected = [k for k in study.runs() if k.fidelity == "corrected"]
    presets = presets or list(dict.fromkeys(k.preset for k in corrected))
    missing = [p for p in presets if not any(k.preset == p for k in corrected)]
    if missing:
        sys.exit(f"{config} has no corrected run of preset {', '.join(missing)}: name a preset its grid trains "
                 "under fidelity: corrected (--preset)")
    keys = [next(k for k in corrected if k.preset == p) for p in presets]
    rows = []
    for key in keys:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(Path(tmp) / "inductor-cache"), OMP_NUM_THREADS="1")
            for arm, compile_on, runs, cache in ARMS:
                trained = train_in_one_process(study.trainer_config(key), compile_on, runs, Path(tmp) / arm / cache,
                                               env)
                for i, row in enumerate(trained):
                    rows.append({"run": f"{key.group}/seed{key.seed}", "preset": key.preset, "arm": arm,
                                 "cache": cache, "in_process": i, **row})
                    print(json.dumps(rows[-1]), flush=True)
    seeds = {p: sum(k.preset == p for k in corrected) for p in presets}  # the study's runs of each preset
    return {"machine": cpu_description(), "git_commit": git_commit(), "config": config, "seeds": seeds, "runs": rows,
            "command": "python scripts/compile_breakeven.py --config " + config
                       + "".join(f" --preset {p}" for p in presets or [])}


def _seconds(rows: list[dict], preset: str, arm: str, cache: str, in_process: int) -> float:
    return next(r["seconds"] for r in rows
                if (r["preset"], r["arm"], r["cache"], r["in_process"]) == (preset, arm, cache, in_process))


def table(result: dict, source: str) -> str:
    """Per preset: seconds of a run eager and compiled, as a new process and again in the same process, and
    what compiling saves in the steps against what it costs a new process with a warm cache."""
    rows, stem, seeds = result["runs"], Path(source).stem, result["seeds"]
    lines = [f"<!-- {stem}: begin (written by `python scripts/compile_breakeven.py --table {source} --doc FILE`; "
             "do not edit) -->",
             f"{result['machine']}, one thread, commit `{result['git_commit'][:10]}`; seconds of one corrected run:",
             "", "| preset | eager: new process | eager: again | compiled: new process, empty cache | "
                 "compiled: new process, warm cache | compiled: again | steps: saved | new process: cost |",
             "|---|---|---|---|---|---|---|---|"]
    study = {"eager": 0.0, "compiled": 0.0}
    for preset in dict.fromkeys(r["preset"] for r in rows):
        eager_new, eager_again = (_seconds(rows, preset, "eager", "empty", i) for i in (0, 1))
        cold = _seconds(rows, preset, "compiled", "empty", 0)
        warm, again = (_seconds(rows, preset, "compiled", "warm", i) for i in (0, 1))
        # A study trains each run in a process of its own: the first compiles, the others find the cache.
        study["eager"] += seeds[preset] * eager_new
        study["compiled"] += cold + (seeds[preset] - 1) * warm
        lines.append(f"| `{preset}` | {eager_new:.1f} | {eager_again:.1f} | {cold:.1f} | {warm:.1f} | {again:.1f} | "
                     f"{eager_again - again:+.1f} | {warm - again - (eager_new - eager_again):+.1f} |")
    runs = sum(seeds[p] for p in dict.fromkeys(r["preset"] for r in rows))
    lines += ["", wrapped(f"The study's {runs} corrected runs of these presets, one process each as the workflow "
                          "trains them (each preset's first run compiles, the others find the cache): eager "
                          f"{study['eager']:.0f} s, compiled {study['compiled']:.0f} s.")]
    return "\n".join(lines + [f"<!-- {stem}: end -->"])


def write_table(source: str, doc: str | None, check: bool) -> int:
    return write_doc_table(table(json.loads(Path(source).read_text()), source), source, doc, check)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        return child(*sys.argv[2:5], int(sys.argv[5]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", help="a saved JSON: write its table instead of measuring")
    parser.add_argument("--doc", help="with --table: the page whose block to rewrite (default: print)")
    parser.add_argument("--check", action="store_true", help="with --doc: write nothing; exit 1 if it differs")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--preset", action="append", help="only this preset's first corrected run (repeatable)")
    parser.add_argument("--out", default="docs/figures/compile_breakeven_cpu.json")
    args = parser.parse_args()
    if args.table:
        sys.exit(write_table(args.table, args.doc, args.check))
    result = measure(args.config, args.preset)
    atomic_write_json(Path(args.out), result)
    print(table(result, args.out))


if __name__ == "__main__":
    main()
