"""Do two studies' runs report the same numbers? Compares every metrics.json under two results folders.

  python scripts/compare_runs.py BEFORE/results AFTER/results [--ignore KEY ...]

Run folders are paired by their path below ``runs/``. Wall-clock and machine figures differ between any two
runs and are left out (as tests/conftest.py ``numbers`` does): wall seconds, images/s, peak memory, and the
code's version and commit; ``--ignore`` leaves out further top-level keys (e.g. a key a new version adds).
Prints each difference with its JSON path and exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TIMINGS = {"wall_seconds", "task_wall_seconds", "train_images_per_second", "phases", "peak_rss_mb",
           "peak_device_memory_mb", "wscl_version", "git_commit", "gpu_share"}  # gpu_share: where it ran
EPOCH_TIMINGS = {"seconds", "images_per_second", "peak_memory_mb"}


def comparable(metrics: dict, ignore: set[str]) -> dict:
    out = {k: v for k, v in metrics.items() if k not in TIMINGS | ignore}
    out["tasks"] = [{**task, "dynamics": [{k: v for k, v in e.items() if k not in EPOCH_TIMINGS}
                                          for e in task.get("dynamics", [])]} for task in metrics.get("tasks", [])]
    return out


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in (differences(a.get(key), b.get(key), f"{path}.{key}") if key in a and key in b
                          else [f"{path}.{key}: only in {'before' if key in a else 'after'}"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore", nargs="*", default=[], help="further top-level keys to leave out")
    args = parser.parse_args()
    runs = {p.relative_to(args.before / "runs").parent for p in (args.before / "runs").rglob("metrics.json")}
    after = {p.relative_to(args.after / "runs").parent for p in (args.after / "runs").rglob("metrics.json")}
    if runs != after:
        only = (sorted(map(str, runs - after)), sorted(map(str, after - runs)))
        print(f"different runs: only before {only[0]}, only after {only[1]}")
        return 1
    found = 0
    for run in sorted(runs):
        a, b = (comparable(json.loads((root / "runs" / run / "metrics.json").read_text()), set(args.ignore))
                for root in (args.before, args.after))
        for line in differences(a, b):
            print(f"{run}: {line}")
            found += 1
    print(f"{len(runs)} runs compared: {'identical' if not found else f'{found} differences'} "
          f"(left out: {', '.join(sorted(TIMINGS | set(args.ignore)))}, per-epoch {', '.join(sorted(EPOCH_TIMINGS))})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
