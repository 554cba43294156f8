"""The README's ablation paragraph [ours], written from the ablation study's results snapshot (``wscl snapshot
--study-config config/ablation.yaml``): every comparison of the study (study/comparisons.py), paired over the
seeds both presets have, with the interval the study's seed rule gives (Stein's two-stage interval when the study
asks for a precision), and which of the paper's stage claims ("without stage X, WSCL is worse") hold.
``wscl readme-results`` writes it between its markers in the README."""
from __future__ import annotations

from wscl.core.errors import RunResultError
from wscl.study.comparisons import Comparison, Precision, comparison_pairs, paired
from wscl.study.snapshot import machine_text, seeds_text, with_block, wrapped

BEGIN, END = "<!-- ablation: begin", "<!-- ablation: end -->"
FIGURE = "class_il_final_avg_acc"
STAGES = {"no_freezing": "freezing", "no_nrem": "NREM", "no_plasticity": "plasticity", "no_rem": "REM"}
GROUP_FIELDS = ("benchmark", "buffer", "method", "fidelity", "point")


def _groups(runs: list[dict]) -> dict[tuple, list[dict]]:
    """The runs by the coordinates a comparison holds fixed (every field but preset and seed)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault(tuple(str(run[k]) for k in GROUP_FIELDS), []).append(run)
    return groups


def _values(runs: list[dict], preset: str) -> dict[int, float]:
    """{seed: Class-IL final accuracy} of one preset's healthy runs: a failed run leaves its comparisons, as in
    the study's tables (docs/method.md, failed runs in a study)."""
    return {int(r["seed"]): float(r[FIGURE]) for r in runs if r["preset"] == preset and not r.get("failure")}


def comparisons(runs: list[dict], precision: Precision | None) -> list[tuple[str, Comparison]]:
    """(title, comparison) of every pair of the study's presets present in ``runs`` (one group)."""
    present = {r["preset"] for r in runs}
    return [(title, paired(_values(runs, a), _values(runs, b), precision)) for title, a, b in comparison_pairs()
            if a in present and b in present]


def _row(title: str, found: Comparison) -> str:
    interval = "–" if found.answer == "too few seeds" else f"[{found.low:+.1f}, {found.high:+.1f}]"
    return f"| {title} | {found.difference:+.1f} {interval} | {found.seeds} ({found.stopped}) | {found.answer} |"


def _verdict(found: list[tuple[str, Comparison]]) -> str:
    """Which of the paper's stage claims hold: `full` is better than `full` without the stage."""
    claims = {STAGES[title.split(" vs ")[1]]: c.answer for title, c in found if title.split(" vs ")[1] in STAGES}
    if not claims:
        return ""
    held = [stage for stage, said in claims.items() if said == "helps"]
    other = [f"{stage} {said}" for stage, said in claims.items() if said != "helps"]
    text = f"Of the paper's {len(claims)} stage claims tested, {len(held)} {'holds' if len(held) == 1 else 'hold'} here"
    if held:
        text += f" ({' and '.join([', '.join(held[:-1]), held[-1]] if len(held) > 1 else held)}"
        text += " help)" if len(held) > 1 else " helps)"
    return text + (f"; {'; '.join(other)}." if other else ".")


def ablation_block(snapshot: dict, snapshot_path: str) -> str:
    """The README's ablation paragraph between its markers: the machine and commit, one table per group of
    runs, the stage claims' verdict and the failed runs."""
    runs, spec = snapshot["runs"], snapshot["comparisons"]["precision"]
    precision = Precision(**spec) if spec else None
    rule = (f"Stein's two-stage 95% interval (pilot {precision.pilot} seeds, target ±{precision.half_width:g}, at "
            f"most {precision.max} seeds)" if precision else "95% t interval")
    fidelities = sorted({r["fidelity"] for r in runs})
    lines = [f"{BEGIN} (written by `wscl readme-results` from {snapshot_path}; do not edit) -->",
             wrapped(f"Measured on {machine_text(snapshot['machine'])}, commit `{snapshot['git_commit'][:10]}` "
                     f"({len(runs)} runs, `fidelity: {', '.join(fidelities)}`, seeds {seeds_text(runs)}): Class-IL "
                     f"final accuracy, a − b paired over the seeds both presets have, {rule}.")]
    verdicts = []
    for key, group in sorted(_groups(runs).items()):
        found = comparisons(group, precision)
        if not found:
            continue
        benchmark, buffer, method, fidelity, point = key
        title = f"{benchmark}, buffer {buffer}, {method}, {fidelity}" + (f", point {point}" if point else "")
        lines += ["", f"| {title} | a − b [95%] | seeds | answer |", "|---|---|---|---|"]
        lines += [_row(name, comparison) for name, comparison in found]
        verdicts.append(_verdict(found))
    if len(verdicts) == 0:
        raise RunResultError(f"{snapshot_path}: no two presets of one comparison (study/comparisons.py) share a "
                             "benchmark, buffer, method and fidelity; make it from config/ablation.yaml's study")
    failed = sorted(f"{r['preset']} seed {r['seed']}" for r in runs if r.get("failure"))
    tail = " ".join(v for v in verdicts if v)
    if failed:
        tail += f" Failed runs, left out of their comparisons: {'; '.join(failed)}."
    return "\n".join(lines + (["", wrapped(tail.strip())] if tail.strip() else []) + [END])


def readme_with_ablation(readme: str, block: str, readme_path) -> str:
    return with_block(readme, (BEGIN, END), block, readme_path, "ablation paragraph")
