"""Published numbers from one source [ours]: a results snapshot and the README table written from it.

``wscl snapshot`` reads a finished study's ``tables/all_runs.csv`` and writes ``docs/snapshot/default.json``:
every run's final figures, the machine the runs were made on and the git commit of the code that made them.
``wscl readme-results`` writes the README's results table (between its two markers) from that snapshot, and
``--check`` fails when the README says anything else (tests/test_snapshot.py runs it on the committed files).
"""
from __future__ import annotations

import io
import json
import os
import re
import statistics
import sys
from pathlib import Path

from wscl.core.errors import RunResultError
from wscl.core.safe_io import atomic_write_text, read_result

RUN_FIELDS = ("benchmark", "buffer", "method", "preset", "point", "fidelity", "seed", "device", "device_name",
              "git_commit")
FIGURES = ("class_il_final_avg_acc", "class_il_forgetting", "task_il_final_avg_acc")
TUNING_FIGURE = "tune_class_il_final_avg_acc"  # a study with a tuning split; None without one
BEGIN, END = "<!-- results: begin", "<!-- results: end -->"
README_PRESETS = {"base": "`base` (ER-ACE alone)", "authors": "`authors` (the authors' WSCL)",
                  "full": "`full` (the paper's WSCL)"}
FIDELITIES = ("reference", "corrected")
AGGREGATE_FIRST = "run the study to its end first (`make run`), so that its aggregate rule writes it"


def _one(values: set, what: str, runs_csv: Path):
    """The single value every run shares: published numbers come from one commit and one machine."""
    values = {v for v in values if v == v and v not in ("", None)}  # NaN and blanks are unknown, not different
    if len(values) != 1:
        raise RunResultError(f"{runs_csv}: the runs have {len(values)} {what}s ({', '.join(map(str, sorted(values)))}"
                             f"); a snapshot needs every run from one {what}: rerun the study on one")
    return values.pop()


def make_snapshot(runs_csv: Path, selection: Path | None = None, study_config: Path | None = None) -> dict:
    """The snapshot of a study's runs (``tables/all_runs.csv``): per run its coordinates and final figures, and
    the machine and commit they share; with a sweep's ``selection`` (tables/selection.json), each swept group's
    points on the tuning split and the one chosen; with the ``study_config`` that ran them, its seed rule, which
    the comparisons' intervals follow (the README's ablation paragraph)."""
    import pandas as pd
    runs = pd.read_csv(io.BytesIO(read_result(runs_csv, AGGREGATE_FIRST)), keep_default_na=True)
    if "in_table" in runs and selection is None:  # a sweep's snapshot keeps every point's runs
        runs = runs[runs.in_table]
    rows = []
    for record in runs.to_dict("records"):
        row = {k: record.get(k) for k in RUN_FIELDS}
        row["point"] = "" if row["point"] != row["point"] else row["point"]  # NaN: no sweep point
        row.update({k: round(float(record[k]), 4) for k in FIGURES})
        tuning = float(record.get(TUNING_FIGURE, float("nan")))
        if tuning == tuning:  # NaN: no tuning split
            row[TUNING_FIGURE] = round(tuning, 4)
        failure = record.get("failure", "")
        row["failure"] = "" if failure != failure else str(failure)  # NaN: no failure
        rows.append(row)
    found = {"git_commit": _one(set(runs.git_commit), "git commit", runs_csv),
            "machine": {"device_name": _one(set(runs.device_name), "device name", runs_csv),
                        "device": _one(set(runs.device), "device", runs_csv), "cpu_cores": os.cpu_count()},
            "source": str(runs_csv), "runs": sorted(rows, key=lambda r: [str(r[k]) for k in RUN_FIELDS])}
    if selection is not None:
        found["selection"] = json.loads(read_result(selection, AGGREGATE_FIRST))["groups"]
    if study_config is not None:
        found["comparisons"] = {"precision": _precision_of(study_config)}
    return found


def _precision_of(study_config: Path) -> dict | None:
    """The study's ``seeds: {pilot, half_width, max}`` as its comparisons used it; None for a fixed seed list."""
    import yaml

    from wscl.study.comparisons import parse_seeds
    try:
        spec = (yaml.safe_load(Path(study_config).read_text()) or {}).get("seeds", 3)
        precision = parse_seeds(spec)[1]
    except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise RunResultError(f"{study_config}: its seeds cannot be read ({exc}); pass the study config file that "
                             "ran the runs with --study-config") from None
    return None if precision is None else {"pilot": precision.pilot, "half_width": precision.half_width,
                                           "max": precision.max}


def write_snapshot(snapshot: dict, out: Path) -> None:
    atomic_write_text(out, json.dumps(snapshot, indent=2, sort_keys=True) + "\n")


def read_snapshot(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunResultError(f"{path} is missing: make it from a finished default study with "
                             "`make snapshot` (docs/development.md, Published numbers)") from None
    except (OSError, ValueError) as exc:
        raise RunResultError(f"{path} cannot be read as JSON ({exc}): make it again with `make snapshot`") from None


def _cell(runs: list[dict], preset: str, fidelity: str) -> str:
    """Mean ± sd of the healthy seeds, as the tables count them (docs/method.md, failed runs in a study); the
    failed seeds are named."""
    mine = [r for r in runs if r["preset"] == preset and r["fidelity"] == fidelity and not r["point"]]
    values = [r["class_il_final_avg_acc"] for r in mine if not r.get("failure")]
    failed = sorted(int(r["seed"]) for r in mine if r.get("failure"))
    note = f" (failed: seed {', '.join(map(str, failed))})" if failed else ""
    return mean_sd(values) + note


def seeds_text(runs: list[dict]) -> str:
    """The runs' seeds: "0-4" when consecutive, else listed."""
    seeds = sorted({int(r["seed"]) for r in runs})
    consecutive = seeds == list(range(seeds[0], seeds[-1] + 1)) if seeds else False
    return f"{seeds[0]}-{seeds[-1]}" if consecutive and len(seeds) > 1 else ", ".join(map(str, seeds))


def machine_text(machine: dict) -> str:
    """The machine a snapshot's runs were made on, as every published figure names it."""
    if machine["device"] == "cpu":
        return f"**{machine['device_name']}, {machine['cpu_cores']} CPU cores**, no GPU"
    return f"**{machine['device_name']}**"


def mean_sd(values) -> str:
    values = list(values)
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def wrapped(text: str, width: int = 115) -> str:
    """``text`` broken into lines of at most ``width`` characters, as the README's prose is."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def with_block(readme: str, markers: tuple[str, str], block: str, readme_path, what: str) -> str:
    """``readme`` with the text between its ``markers`` (begin prefix, end line) replaced by ``block``."""
    begin, end = markers
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if len(pattern.findall(readme)) != 1:
        raise RunResultError(f"{readme_path} needs exactly one {what} block, from a line starting {begin!r} to "
                             f"{end!r}; put them back around the {what}")
    return pattern.sub(lambda _: block, readme)


def write_doc_table(block: str, source: str, doc: str | None, check: bool) -> int:
    """A table written from the raw file ``source``: printed (``doc`` None), or put between its markers (the
    block's first line up to " (", and its last line) in the page ``doc``; ``check``: write nothing, return 1
    when the page differs. Used by the scripts that publish figures in docs/performance.md."""
    if doc is None:
        print(block)
        return 0
    text = Path(doc).read_text()
    lines = block.split("\n")
    try:
        wanted = with_block(text, (lines[0].split(" (")[0], lines[-1]), block, doc, f"table of {source}")
    except RunResultError as e:
        sys.exit(str(e))
    if check:
        if wanted != text:
            print(f"{doc}: the table of {source} differs; write it with --table {source} --doc {doc}",
                  file=sys.stderr)
        return int(wanted != text)
    Path(doc).write_text(wanted)
    return 0


def readme_block(snapshot: dict, snapshot_path: str) -> str:
    """The README's results table with the sentence that names its machine and commit, between the markers."""
    runs, machine = snapshot["runs"], snapshot["machine"]
    lines = [f"{BEGIN} (written by `wscl readme-results` from {snapshot_path}; do not edit) -->",
             f"Class-IL final average accuracy, mean ± sd over seeds {seeds_text(runs)} (a failed seed, named, left "
             f"out as in the study's tables), from `make run` on {machine_text(machine)}, "
             f"commit `{snapshot['git_commit'][:10]}`:", "",
             "| preset | `fidelity: reference` | `fidelity: corrected` |", "|---|---|---|"]
    lines += [f"| {label} | " + " | ".join(_cell(runs, preset, f) for f in FIDELITIES) + " |"
              for preset, label in README_PRESETS.items()]
    return "\n".join(lines + [END])


def readme_with(readme: str, block: str, readme_path: Path) -> str:
    """``readme`` with the text between its results markers replaced by ``block``."""
    return with_block(readme, (BEGIN, END), block, readme_path, "results")
