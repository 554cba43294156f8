"""The README's sweep paragraph [ours], written from a sweep study's results snapshot (``wscl snapshot
--selection``): which point the tuning split chose, how tuned `full` compares with `base` and `authors` on
test, and what each ablation costs at the tuned point; every difference paired over seeds
(wscl/study/comparisons.py). ``wscl readme-results`` writes it between its markers in the README."""
from __future__ import annotations

from collections import Counter

from wscl.core.errors import RunResultError
from wscl.study.comparisons import paired
from wscl.study.snapshot import machine_text, mean_sd, seeds_text, with_block, wrapped
from wscl.study.sweeps import TUNED

BEGIN, END = "<!-- sweep: begin", "<!-- sweep: end -->"
FIGURE = "class_il_final_avg_acc"
TUNING = "tune_class_il_final_avg_acc_mean"


def _values(runs: list[dict], preset: str, point: str) -> dict[int, float]:
    """{seed: Class-IL final accuracy on test} of one preset at one point, healthy seeds only."""
    return {int(r["seed"]): r[FIGURE] for r in runs
            if r["preset"] == preset and r["point"] == point and not r.get("failure")}


def _of_group(runs: list[dict], group: str) -> list[dict]:
    """The runs beside a swept group (benchmark/bufferB/method/preset/fidelity): same benchmark, buffer, method
    and fidelity, any preset."""
    benchmark, buffer, method, _, fidelity = group.split("/")
    return [r for r in runs if (r["benchmark"], f"buffer{r['buffer']}", r["method"], r["fidelity"])
            == (benchmark, buffer, method, fidelity)]


def _centre(points: dict) -> dict | None:
    """Each swept setting's most common value over the points: the study's own settings that a one-at-a-time
    sweep varies around; None when a setting has no single most common value (a grid, a single setting)."""
    names = next(iter(points.values()))["settings"]
    centre = {}
    for name in names:
        counts = Counter(repr(p["settings"][name]) for p in points.values()).most_common(2)
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            return None
        centre[name] = counts[0][0]
    return centre


def _describe(point: dict, centre: dict | None) -> str:
    if centre is None:
        return ", ".join(f"`{name}: {value}`" for name, value in point["settings"].items())
    changed = [f"`{name}: {value}`" for name, value in point["settings"].items() if repr(value) != centre[name]]
    return ", ".join(changed) or "the study's settings"


def _difference(a: dict[int, float], b: dict[int, float]) -> str:
    found = paired(a, b)
    if found.answer == "too few seeds":
        return f"{found.difference:+.1f} (too few seeds)"
    return f"{found.difference:+.1f} [{found.low:+.1f}, {found.high:+.1f}] ({found.answer})"


def sweep_block(snapshot: dict, snapshot_path: str) -> str:
    """The README's sweep paragraph between its markers."""
    runs, machine = snapshot["runs"], snapshot["machine"]
    groups = snapshot.get("selection", {})
    full = [(name, g) for name, g in groups.items() if name.split("/")[3] == "full"]
    if len(full) != 1:
        raise RunResultError(f"{snapshot_path}: the sweep paragraph needs one swept group of `full`, found "
                             f"{len(full)}; "
                             "make the snapshot of config/sweep.yaml's study with --selection")
    group_name, group = full[0]
    runs = _of_group(runs, group_name)
    points, chosen = group["points"], group["selected"]
    centre = _centre(points)
    default = next((name for name, p in points.items() if centre and _describe(p, centre) == "the study's settings"),
                   None)
    scored = [name for name, p in points.items() if p.get(TUNING) == p.get(TUNING)]  # NaN: every seed failed
    weakest = min(scored, key=lambda name: points[name][TUNING])
    tuned = _values(runs, "full", chosen)
    fidelities = sorted({r["fidelity"] for r in runs})
    text = [f"Measured on {machine_text(machine)}, commit `{snapshot['git_commit'][:10]}` ({len(runs)} runs, "
            f"`fidelity: {', '.join(fidelities)}`, seeds {seeds_text(runs)}), Class-IL final accuracy on "
            "test, mean ± sd; differences paired over seeds, with 95% t intervals.",
            f"The tuning split chose {_describe(points[chosen], centre)} (tuning "
            f"{points[chosen][TUNING]:.1f}"
            + (f"; the study's settings {points[default][TUNING]:.1f}" if default else "")
            + f"); tuned `full` **{mean_sd(tuned.values())}**"]
    for other in ("base", "authors"):
        values = _values(runs, other, "")
        if values:
            text[-1] += f", against `{other}` {mean_sd(values.values())}: {_difference(tuned, values)}"
    text[-1] += "."
    ablations = sorted({r["preset"] for r in runs if r["point"] == TUNED} - {"full"})
    if ablations:
        text.append("At the tuned point, `full` minus " + "; minus ".join(
            f"`{preset}` {_difference(tuned, _values(runs, preset, TUNED))}" for preset in ablations) + ".")
    text.append(f"The weakest point on the tuning split: {_describe(points[weakest], centre)} "
                f"(tuning {points[weakest][TUNING]:.1f}; on test {mean_sd(_values(runs, 'full', weakest).values())}).")
    failed = sorted(f"{r['preset']}{'@' + r['point'] if r['point'] else ''} seed {r['seed']}" for r in runs
                    if r.get("failure"))
    if failed:
        text.append(f"Failed runs, left out: {'; '.join(failed)}.")
    return "\n".join([f"{BEGIN} (written by `wscl readme-results` from {snapshot_path}; do not edit) -->",
                      wrapped(" ".join(text)), END])


def readme_with_sweep(readme: str, block: str, readme_path) -> str:
    return with_block(readme, (BEGIN, END), block, readme_path, "sweep paragraph")
