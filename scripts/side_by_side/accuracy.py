#!/usr/bin/env python3
"""Accuracy of the authors' code against ours on the same data: the side-by-side table of docs/fidelity.md.

Per seed, one training at a time: the authors' base ER-ACE and ER-ACE + WSCL, and ours as `base` and `authors`
under both fidelities (the commands of README.md in this folder, through timing.py's runners). Every run is
appended to OUT/accuracy.jsonl as it ends, with the figures each code reports: the authors' from the line their
logger appends to data/results/{class-il,task-il}/<dataset>/er_ace/logs.pyd, ours from metrics.json.

    python scripts/side_by_side/accuracy.py run --authors $AUTHORS --authors-python $AUTHORS_VENV/bin/python \\
        --data $SBS/ours_data --out $SBS/accuracy --seeds 0 1 2
    python scripts/side_by_side/accuracy.py snapshot --out $SBS/accuracy      # -> docs/snapshot/side_by_side.json
    python scripts/side_by_side/accuracy.py doc [--check]                     # the table in docs/fidelity.md

``snapshot`` refuses runs of ours from more than one commit or machine (as ``wscl snapshot`` does); ``doc`` writes
the table between its markers in docs/fidelity.md, and ``--check`` (tests/test_snapshot.py) fails when it differs.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import run_authors, run_ours  # noqa: E402  (this folder's runners)

from wscl.study.snapshot import mean_sd, wrapped  # noqa: E402  (as the README's blocks write them)

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "docs" / "snapshot" / "side_by_side.json"
DOC = ROOT / "docs" / "fidelity.md"
BEGIN, END = "<!-- side-by-side: begin", "<!-- side-by-side: end -->"
AUTHORS_DATASET = {"base": "seq-cifar10", "authors": "dream-seq-cifar10"}
ROWS = [("authors", "authors", None, "authors' code, ER-ACE + WSCL"),
        ("ours", "authors", "reference", "ours, `authors`, `reference`"),
        ("ours", "authors", "corrected", "ours, `authors`, `corrected`"),
        ("authors", "base", None, "authors' code, plain ER-ACE (patched to run)"),
        ("ours", "base", "reference", "ours, `base`, `reference`"),
        ("ours", "base", "corrected", "ours, `base`, `corrected`")]
FIGURES = ("class_il", "task_il", "class_il_forgetting")


def authors_figures(authors: Path, preset: str, seed: int) -> dict:
    """The last line the authors' logger appended for this run: final average accuracy (accmean_task5) and
    Mammoth's forgetting, Class-IL and Task-IL."""
    found = {}
    for setting, key in (("class-il", "class_il"), ("task-il", "task_il")):
        path = authors / "data" / "results" / setting / AUTHORS_DATASET[preset] / "er_ace" / "logs.pyd"
        line = path.read_text().splitlines()[-1]
        if not re.search(rf"'seed': {seed}\b", line):
            raise SystemExit(f"{path}: its last line is not seed {seed}'s run; run the seeds one at a time")
        found[key] = _number(line, "accmean_task5")
        if setting == "class-il":
            found["class_il_forgetting"] = _number(line, "forgetting")
    return found


def _number(line: str, key: str) -> float:
    """``key``'s value in a logger line (a dict's repr: plain, or numpy's ``np.float64(x)``)."""
    return float(re.search(rf"'{key}': (?:np\.float64\()?([-+0-9.eE]+)", line).group(1))


def ours_figures(metrics_path: str) -> dict:
    m = json.loads(Path(metrics_path).read_text())
    return {"class_il": m["class_il"]["final_avg_acc"], "task_il": m["task_il"]["final_avg_acc"],
            "class_il_forgetting": m["class_il"]["forgetting_incl_pretraining"],  # the authors' definition [code]
            "git_commit": m.get("git_commit"), "device_name": m.get("device_name"),
            "torch_version": m.get("torch_version")}


def run(args) -> None:
    """Every run not yet in the journal, one at a time (a run that ended well is not redone)."""
    journal = args.out / "accuracy.jsonl"
    done = {(r["code"], r["preset"], r["fidelity"], r["seed"]) for r in _records(journal) if r["rc"] == 0}
    for seed in args.seeds:
        for code, preset, fidelity, _ in ROWS:
            if (code, preset, fidelity, seed) in done:
                continue
            time.sleep(args.pause)
            if code == "authors":
                result = run_authors(args, preset, seed)
                figures = authors_figures(args.authors, preset, seed) if result["rc"] == 0 else {}
            else:
                result = run_ours(args, preset, seed, fidelity)
                figures = ours_figures(result["metrics"]) if result["rc"] == 0 else {}
            record = {"code": code, "preset": preset, "fidelity": fidelity, "seed": seed, **result, **figures}
            print(json.dumps(record), flush=True)
            with open(journal, "a") as fh:
                fh.write(json.dumps(record) + "\n")


def _records(journal: Path) -> list[dict]:
    return [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []


def make_snapshot(journal: Path, authors_commit: str) -> dict:
    """Every run of the journal (a rerun seed replaces the earlier record), with the machine and the commits of
    both codes; ours from one commit and one machine."""
    records = {(r["code"], r["preset"], r["fidelity"], r["seed"]): r for r in _records(journal)}
    ours = [r for r in records.values() if r["code"] == "ours" and r["rc"] == 0]
    for field in ("git_commit", "device_name", "torch_version"):
        if len({r[field] for r in ours}) != 1:
            raise SystemExit(f"{journal}: our runs have {len({r[field] for r in ours})} values of {field}; rerun "
                             "them with one commit on one machine")
    runs = [{k: r.get(k) for k in ("code", "preset", "fidelity", "seed", "rc", *FIGURES)}
            for r in records.values()]
    return {"machine": {"device_name": ours[0]["device_name"], "cpu_cores": os.cpu_count()},
            "ours_commit": ours[0]["git_commit"], "authors_commit": authors_commit,
            "torch_version": ours[0]["torch_version"],
            "runs": sorted(runs, key=lambda r: (r["code"], r["preset"], str(r["fidelity"]), r["seed"]))}


def doc_block(snapshot: dict) -> str:
    """The side-by-side table with the sentence naming the machine and both codes' commits."""
    machine = snapshot["machine"]
    lines = [f"{BEGIN} (written by `scripts/side_by_side/accuracy.py doc` from docs/snapshot/side_by_side.json; "
             "do not edit) -->",
             wrapped(f"Measured on **{machine['device_name']}, {machine['cpu_cores']} CPU cores**, torch "
                     f"{snapshot['torch_version']}; the authors' code at `{snapshot['authors_commit']}`, ours at "
                     f"`{snapshot['ours_commit'][:10]}`. Final average accuracy in percent, mean ± sd over seeds:"),
             "",
             "| run | seeds | Class-IL | Task-IL | Class-IL forgetting [code] |", "|---|---|---|---|---|"]
    for code, preset, fidelity, label in ROWS:
        mine = [r for r in snapshot["runs"] if (r["code"], r["preset"], r["fidelity"]) == (code, preset, fidelity)]
        done = [r for r in mine if r["rc"] == 0]
        if not done:
            continue
        failed = len(mine) - len(done)
        seeds = ", ".join(str(r["seed"]) for r in done) + (f" ({failed} failed)" if failed else "")
        cells = [mean_sd([r[f] for r in done]) for f in FIGURES]
        lines.append(f"| {label} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [END])


def doc_with(text: str, block: str) -> str:
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if len(pattern.findall(text)) != 1:
        raise SystemExit(f"{DOC} needs exactly one block from {BEGIN!r} to {END!r} around the side-by-side table")
    return pattern.sub(lambda _: block, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="train every run, appending to OUT/accuracy.jsonl")
    go.add_argument("--out", type=Path, required=True)
    go.add_argument("--authors", type=Path, required=True, help="the exported, patched authors' code")
    go.add_argument("--authors-python", required=True, help="the Python of the authors' virtual environment")
    go.add_argument("--data", type=Path, required=True, help="our prepared seq-cifar10 stand-in")
    go.add_argument("--wscl", default=str(Path(sys.executable).with_name("wscl")), help="our command")
    go.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    go.add_argument("--pause", type=float, default=5.0, help="seconds between runs (the last one's workers end)")
    snap = sub.add_parser("snapshot", help="OUT/accuracy.jsonl -> docs/snapshot/side_by_side.json")
    snap.add_argument("--out", type=Path, required=True)
    snap.add_argument("--authors-commit", default="8805c74", help="the authors' commit that was run")
    snap.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    doc = sub.add_parser("doc", help="write the table of docs/fidelity.md from the snapshot")
    doc.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    doc.add_argument("--doc", type=Path, default=DOC)
    doc.add_argument("--check", action="store_true", help="write nothing; exit 1 when the doc differs")
    args = parser.parse_args()
    if args.command == "run":
        args.out.mkdir(parents=True, exist_ok=True)
        run(args)
    elif args.command == "snapshot":
        snapshot = make_snapshot(args.out / "accuracy.jsonl", args.authors_commit)
        args.snapshot.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
        print(f"{args.snapshot}: {len(snapshot['runs'])} runs")
    else:
        text = args.doc.read_text()
        wanted = doc_with(text, doc_block(json.loads(args.snapshot.read_text())))
        if args.check:
            if wanted != text:
                print(f"{args.doc}: its side-by-side table differs from {args.snapshot}; write it with "
                      "`python scripts/side_by_side/accuracy.py doc`", file=sys.stderr)
                return 1
            return 0
        args.doc.write_text(wanted)
        print(f"{args.doc}: {'written' if wanted != text else 'already current'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
