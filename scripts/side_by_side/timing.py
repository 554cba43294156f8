#!/usr/bin/env python3
"""Wall time of the authors' code against ours, one training at a time, the two codes alternating.

Per seed: the authors' base ER-ACE, ours base, the authors' ER-ACE + WSCL, ours (`authors` preset), each a
process of its own, timed from start to exit (setup in README.md of this folder). The authors' output is
time-stamped line by line (unbuffered), so that each freezing trial's duration can be read from it
("Decide whether to freeze" ... "It's better ..."); ours records it in metrics.json (task_wall_seconds).
Every run is appended to OUT/timing.jsonl as it ends; ``--table`` prints the tables of docs/performance.md from it.

    python scripts/side_by_side/timing.py --authors $AUTHORS --authors-python $AUTHORS_VENV/bin/python \\
        --data $SBS/ours_data --out $SBS/timing --seeds 0 1 2 3 4
    python scripts/side_by_side/timing.py --out $SBS/timing --table
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

COMMON = ("--model er_ace --buffer_size 200 --lr 0.03 --optim_wd 0 --optim_mom 0 --n_epochs 1 --batch_size 32 "
          "--minibatch_size 32 --nowand 1 --device cpu --non_verbose 1").split()
AUTHORS_ARGS = {
    "base": "--dataset seq-cifar10 --forward_dataset seq-cifar10".split(),
    "authors": ("--dataset dream-seq-cifar10 --dataset_2 CIFAR100 --forward_dataset seq-cifar10 --freezing_eval "
                "training_and_buff --validation 1 --val_dataset_size 100 --freezing_buff_size 20").split(),
}
OURS_SETS = ["model.width=20", "training.epochs=1", "training.buffer_size=200", "training.batch_size=32",
             "training.replay_batch_size=32", "training.lr=0.03", "scenario.val_per_task=100",
             "scenario.freeze_buffer_per_task=20", "wscl.freezing.mode=training_and_buff"]
# The authors' names of the freezable blocks, in order: "frozen through block k" is our frozen_blocks = k.
BLOCKS = ["layer1[0]", "layer1[1]", "layer2[0]", "layer2[1]", "layer3[0]", "layer3[1]"]


def run_authors(args, preset: str, seed: int) -> dict:
    log = args.out / f"authors_{preset}_seed{seed}.log"
    env = dict(os.environ, AUTHORS_THREADS="2", AUTHORS_NF="20", PYTHONUNBUFFERED="1")
    cmd = [args.authors_python, "utils/main.py", *AUTHORS_ARGS[preset], *COMMON, "--seed", str(seed)]
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=args.authors, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        for line in proc.stdout:
            out.write(f"{time.monotonic() - start:9.3f}\t{line}")
        rc = proc.wait()
    return {"rc": rc, "wall_s": round(time.monotonic() - start, 1), "log": str(log)}


def run_ours(args, preset: str, seed: int, fidelity: str = "reference") -> dict:
    out = args.out / "ours" / preset / fidelity / f"seed{seed}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [args.wscl, "train", "--dataset", "seq-cifar10", "--preset", preset, "--fidelity", fidelity,
           "--method", "er_ace", "--seed", str(seed), "--threads", "2", "--quiet", "--out", str(out)]
    for setting in [f"dataset.root={args.data}", *OURS_SETS]:
        cmd += ["--set", setting]
    start = time.monotonic()
    with open(out / "stdout.log", "w") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    return {"rc": rc, "wall_s": round(time.monotonic() - start, 1), "metrics": str(out / "metrics.json")}


def authors_trials(log: str) -> list[tuple[int, int, float]]:
    """(task counted from 1, blocks frozen at the trial's start, seconds) of every trial in a time-stamped log."""
    trials, task, depth, began = [], None, None, None
    for line in Path(log).read_text().splitlines(keepends=True):
        stamp, _, text = line.partition("\t")
        if m := re.match(r"Task n: (\d+) involves", text):
            task = int(m.group(1)) + 1
        if m := re.match(r"Last frozen layer: (.*)", text.strip()):
            depth = 0 if m.group(1) == "None" else BLOCKS.index(m.group(1)) + 1
        if text.startswith("Decide whether to freeze"):
            began = float(stamp)
        if text.startswith("It's better") and began is not None:
            trials.append((task, depth, float(stamp) - began))
            began = None
    return trials


def our_trials(metrics_path: str) -> list[tuple[int, int, float]]:
    m = json.loads(Path(metrics_path).read_text())
    frozen, seconds = m["frozen_blocks_per_task"], m["task_wall_seconds"]
    return [(t + 1, frozen[t - 1], seconds[t]["freezing_trial"]) for t in range(1, len(frozen)) if seconds[t]]


def table(records: list[dict]) -> None:
    runs = defaultdict(dict)
    for r in records:
        if r["rc"] == 0:  # a failed run has no comparable time; a rerun of the same seed replaces the earlier one
            runs[(r["preset"], r["seed"])][r["code"]] = r
    trials = defaultdict(lambda: ([], []))
    for preset in ("base", "authors"):
        pairs = sorted((seed, d) for (p, seed), d in runs.items() if p == preset and len(d) == 2)
        if not pairs:
            continue
        theirs, ours = (sum(d[c]["wall_s"] for _, d in pairs) for c in ("authors", "ours"))
        print(f"\n{preset}: " + ", ".join(f"seed {s} {d['authors']['wall_s']} / {d['ours']['wall_s']} s "
                                          f"({d['authors']['wall_s'] / d['ours']['wall_s']:.2f})" for s, d in pairs)
              + f"; all: {theirs:.1f} / {ours:.1f} s ({theirs / ours:.2f})")
        if preset == "authors":
            for _, d in pairs:
                for task, depth, seconds in authors_trials(d["authors"]["log"]):
                    trials[task, depth][0].append(seconds)
                for task, depth, seconds in our_trials(d["ours"]["metrics"]):
                    trials[task, depth][1].append(seconds)
    print("\n| task | frozen blocks at the trial's start | authors' code | ours | ratio |\n|---|---|---|---|---|")
    for (task, depth), (theirs, ours) in sorted(trials.items()):
        if theirs and ours:
            a, o = statistics.mean(theirs), statistics.mean(ours)
            print(f"| {task} | {depth} | {a:.1f} s ({len(theirs)}) | {o:.1f} s ({len(ours)}) | {a / o:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for logs, our runs and timing.jsonl")
    parser.add_argument("--authors", type=Path, help="the exported, patched authors' code")
    parser.add_argument("--authors-python", help="the Python of the authors' virtual environment")
    parser.add_argument("--data", type=Path, help="our prepared seq-cifar10 stand-in (wscl data prepare)")
    parser.add_argument("--wscl", default=str(Path(sys.executable).with_name("wscl")), help="our command")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--presets", nargs="+", choices=["base", "authors"], default=["base", "authors"],
                        help="which runs to time (base ER-ACE, ER-ACE + WSCL as the authors' code runs it)")
    parser.add_argument("--pause", type=float, default=10.0,
                        help="seconds to wait before each run (not timed): the previous run's processes, e.g. "
                             "the authors' data-loader workers, are gone before the next one starts")
    parser.add_argument("--table", action="store_true", help="print the tables from OUT/timing.jsonl")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    journal = args.out / "timing.jsonl"
    if args.table:
        table([json.loads(line) for line in journal.read_text().splitlines()])
        return 0
    if not (args.authors and args.authors_python and args.data):
        parser.error("--authors, --authors-python and --data are needed to run (or --table to print)")
    for seed in args.seeds:
        for code, preset in [(code, preset) for preset in args.presets for code in ("authors", "ours")]:
            time.sleep(args.pause)
            result = (run_authors if code == "authors" else run_ours)(args, preset, seed)
            record = {"code": code, "preset": preset, "seed": seed, **result,
                      "load": Path("/proc/loadavg").read_text().split()[:3]}
            print(json.dumps(record), flush=True)
            with open(journal, "a") as fh:
                fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
