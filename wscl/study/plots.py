"""Figures: accuracy-matrix heatmaps, accuracy-vs-task curves, ablation bars, frozen blocks per task, each
task's accuracy over time, forgetting vs accuracy, training loss per epoch.

Colours are colour-blind safe (Paul Tol's "muted" scheme) and belong to the preset (config.PRESET_SPECS), the
same in every figure; the method sets the marker and the fidelity the line style (reference solid, corrected
dashed)."""
from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from wscl.core.safe_io import save_figure  # noqa: E402
from wscl.run.figures import heatmap, matrix_of  # noqa: E402
from wscl.settings.config import preset_colour  # noqa: E402

METHOD_MARKERS = {"er_ace": "o", "er": "s", "derpp": "^"}
FIDELITY_LINES = {"reference": "-", "corrected": "--"}


def _finish(fig, ax, title: str, path) -> None:
    """Title, the legend beside the axes, saved (sealed) and closed: the end of every one-panel figure."""
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def style(method: str, preset: str, fidelity: str) -> dict:
    """Colour (by preset), marker (by method) and line style (by fidelity) of a row in every figure."""
    return {"color": preset_colour(preset), "marker": METHOD_MARKERS.get(method, "D"),
            "linestyle": FIDELITY_LINES.get(fidelity, ":")}


GROUP = ["method", "preset", "fidelity", "buffer"]


def _label(method: str, preset: str, fidelity: str, buffer) -> str:
    return f"{method}/{preset} ({fidelity})" + (" no buffer" if buffer == 0 else "")


def mean_accuracy_matrices(runs, path, title: str) -> None:
    """Class-IL accuracy matrix, mean over seeds, one panel per method/preset."""
    import warnings
    groups = list(runs.groupby(GROUP, sort=False))
    matrices, titles = [], []
    for (method, preset, fidelity, buffer), group in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # entries right of the pre-training diagonal are NaN
            mean = np.nanmean(np.stack([matrix_of(m) for m in group.matrix_class_il]), axis=0)
        matrices.append(mean.tolist())
        titles.append(_label(method, preset, fidelity, buffer))
    cols = min(4, len(matrices))
    rows = -(-len(matrices) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[len(matrices):]:
        ax.axis("off")
    for ax, R, name in zip(axes.flat, matrices, titles):
        im = heatmap(ax, R, name, small=True)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="Class-IL accuracy (%)")
    fig.suptitle(f"{title}: Class-IL accuracy matrix (mean over seeds)", fontsize=9)
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def average_accuracy_curves(runs, path, title: str) -> None:
    """Average Class-IL accuracy over the tasks seen so far, after each task; band = ± std over seeds."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (method, preset, fidelity, buffer), group in runs.groupby(GROUP, sort=False):
        curves = []
        for rows in group.matrix_class_il:
            R = matrix_of(rows)
            curves.append([np.mean(R[t, : t + 1]) for t in range(R.shape[0])])
        curves = np.array(curves)
        mean, std = curves.mean(0), curves.std(0)
        x = np.arange(1, len(mean) + 1)
        look = style(method, preset, fidelity)
        ax.plot(x, mean, label=_label(method, preset, fidelity, buffer), **look)
        ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=look["color"])
    ax.set_xlabel("tasks learned")
    ax.set_ylabel("average Class-IL accuracy (%)")
    ax.set_ylim(0, 100)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _finish(fig, ax, title, path)


def ablation_bars(table, path, title: str) -> None:
    """Final average accuracy per method/preset (Class-IL and Task-IL), error bars = std over seeds."""
    labels = [_label(m, p, f, b) for m, p, f, b in zip(table.method, table.preset, table.fidelity, table.buffer)]
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(labels) + 2), 4))
    colours = [style(m, p, f)["color"] for m, p, f in zip(table.method, table.preset, table.fidelity)]
    ax.bar(x - 0.2, table.class_il_final_avg_acc_mean, 0.4, yerr=table.class_il_final_avg_acc_std, color=colours,
           edgecolor="black", label="Class-IL (solid)")
    ax.bar(x + 0.2, table.task_il_final_avg_acc_mean, 0.4, yerr=table.task_il_final_avg_acc_std, color=colours,
           edgecolor="black", hatch="//", alpha=0.55, label="Task-IL (hatched)")
    paper = pd.to_numeric(table.paper_class_il_final_avg_acc, errors="coerce")
    if paper.notna().any():
        ax.scatter(x[paper.notna()] - 0.2, paper[paper.notna()], marker="*", s=120, color="k", zorder=3,
                   label="paper (reported, Class-IL)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("final average accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def frozen_blocks(runs, path, title: str) -> None:
    """Residual blocks frozen after each task (mean over seeds), per method/preset."""
    from wscl.method.backbone import ResNet18
    most = ResNet18.N_FREEZABLE_BLOCKS
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for (method, preset, fidelity, buffer), group in runs.groupby(GROUP, sort=False):
        counts = np.array(list(group.frozen_blocks), dtype=float)
        ax.plot(np.arange(1, counts.shape[1] + 1), counts.mean(0), label=_label(method, preset, fidelity, buffer),
                **style(method, preset, fidelity))
    ax.set_xlabel("after task")
    ax.set_ylabel(f"frozen residual blocks (of {most})")
    ax.set_ylim(-0.2, most + 0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _finish(fig, ax, title, path)


def task_accuracy_over_time(runs, path, title: str) -> None:
    """Class-IL accuracy of each task after every later task (mean over seeds): one line per task, one panel
    per method/preset; a falling line is forgetting."""
    groups = list(runs.groupby(GROUP, sort=False))
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False, sharey=True,
                             layout="constrained")
    for ax in axes.flat[len(groups):]:
        ax.axis("off")
    for ax, ((method, preset, fidelity, buffer), group) in zip(axes.flat, groups):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # entries not yet evaluated are NaN
            R = np.nanmean(np.stack([matrix_of(m) for m in group.matrix_class_il]), axis=0)
        T = R.shape[0]
        shades = plt.get_cmap("cividis")(np.linspace(0, 0.9, T))
        for j in range(T):
            x = np.arange(j + 1, T + 1)
            ax.plot(x, R[j:, j], marker=METHOD_MARKERS.get(method, "D"), markersize=4, color=shades[j],
                    linestyle=FIDELITY_LINES.get(fidelity, ":"), label=f"task {j + 1}")
        ax.set_title(_label(method, preset, fidelity, buffer), fontsize=8,
                     color=style(method, preset, fidelity)["color"], fontweight="bold")
        ax.set_xticks(range(1, T + 1))
        ax.set_xlabel("after training task", fontsize=7)
        ax.set_ylabel("Class-IL accuracy (%)", fontsize=7)
        ax.set_ylim(0, 100)
    axes.flat[0].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{title}: accuracy of each task over time (mean over seeds)", fontsize=9)
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def loss_curves(runs, path, title: str) -> None:
    """Mean training loss per epoch, one panel per phase that ran (wake, NREM, REM), one line per
    method/preset, band = ± std over seeds; runs of one group train the same number of epochs."""
    from wscl.method.dynamics import LOSS_PHASES
    phases = [p for p in LOSS_PHASES if any(c.get(p) for c in runs.loss_curves)]
    fig, axes = plt.subplots(1, max(len(phases), 1), figsize=(4.6 * max(len(phases), 1), 3.6), squeeze=False,
                             layout="constrained")
    for ax, phase in zip(axes[0], phases):
        for (method, preset, fidelity, buffer), group in runs.groupby(GROUP, sort=False):
            curves = [c[phase] for c in group.loss_curves if c.get(phase)]
            if not curves or len({len(c) for c in curves}) != 1:
                continue
            curves = np.array(curves, dtype=float)
            mean, std = curves.mean(0), curves.std(0)
            x = np.arange(1, len(mean) + 1)
            look = style(method, preset, fidelity)
            ax.plot(x, mean, label=_label(method, preset, fidelity, buffer), color=look["color"],
                    linestyle=look["linestyle"], linewidth=1.2, marker=look["marker"], markersize=3)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15, color=look["color"])
        if phase == "wake":  # every task trains the same number of wake epochs
            n_tasks, n_epochs = len(runs.matrix_class_il.iloc[0]), len(runs.loss_curves.iloc[0]["wake"])
            for boundary in range(n_epochs // n_tasks, n_epochs, max(n_epochs // n_tasks, 1)):
                ax.axvline(boundary + 0.5, color="#999999", linestyle=":", linewidth=0.8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel(f"{phase} epoch (over the whole run)", fontsize=8)
        ax.set_ylabel("mean training loss", fontsize=8)
        ax.set_title(phase, fontsize=9)
    if not phases:
        axes[0][0].text(0.5, 0.5, "no epoch losses recorded", ha="center", va="center")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    fig.suptitle(f"{title}: training loss per epoch (mean over seeds)", fontsize=9)
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def forgetting_vs_accuracy(table, path, title: str) -> None:
    """Class-IL forgetting (x) against final average accuracy (y) per method/preset; error bars = std over
    seeds. Better is up and to the left."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for row in table.itertuples():
        look = style(row.method, row.preset, row.fidelity)
        ax.errorbar(row.class_il_forgetting_mean, row.class_il_final_avg_acc_mean,
                    xerr=row.class_il_forgetting_std, yerr=row.class_il_final_avg_acc_std, color=look["color"],
                    marker=look["marker"], markersize=7, capsize=3, linestyle="none",
                    mfc=look["color"] if row.fidelity == "reference" else "white",
                    label=_label(row.method, row.preset, row.fidelity, row.buffer))
    ax.set_xlabel("Class-IL forgetting (percentage points, lower is better)")
    ax.set_ylabel("Class-IL final average accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def sensitivity(points: pd.DataFrame, key: str, path, title: str) -> None:
    """Tuning (solid) and test (dashed) Class-IL final accuracy against one swept setting, the other swept
    settings held at the selected point; error bars = std over seeds; one line per method/preset/fidelity."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    others = [c for c in points.columns if "." in c and c != key]  # the other swept settings (dotted keys)
    for (method, preset, fidelity), group in points.groupby(["method", "preset", "fidelity"], sort=False):
        chosen = group[group.selected].iloc[0]
        line = _slice(group[group[key].notna()], others, chosen).sort_values(key, key=lambda v: v.map(_sortable))
        x = [str(v) for v in line[key]]
        look = style(method, preset, fidelity)
        ax.errorbar(x, line.tune_mean, yerr=line.tune_std, color=look["color"], marker=look["marker"], capsize=3,
                    label=f"{_label(method, preset, fidelity, None)} tuning")
        ax.errorbar(x, line.test_mean, yerr=line.test_std, color=look["color"], marker=look["marker"], capsize=3,
                    linestyle="--", mfc="white", label=f"{_label(method, preset, fidelity, None)} test")
        if chosen.point in set(line.point):
            picked = list(line.point).index(chosen.point)
            ax.plot([x[picked]], [line.tune_mean.iloc[picked]], marker="*", markersize=14, color=look["color"],
                    linestyle="none")
    ax.set_xlabel(key)
    ax.set_ylabel("Class-IL final average accuracy (%)")
    ax.set_title(f"{title}: sensitivity to {key} (star: selected on tuning)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)


def _slice(points: pd.DataFrame, others: list[str], chosen) -> pd.DataFrame:
    """The points that vary one setting: those sharing the selected point's other settings when there are two
    or more (a grid), else the largest set sharing their other settings (one at a time: around the defaults)."""
    if not others:
        return points
    same = (points[others].astype(str) == chosen[others].astype(str)).all(axis=1)
    if same.sum() >= 2:
        return points[same]
    return max((group for _, group in points.groupby(others, dropna=False, sort=False)), key=len)


def _sortable(value):
    """Numbers in numeric order, then other values by their text."""
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0,
                                                                                                            str(value))


def comparison_intervals(found: pd.DataFrame, path, title: str, precision=None) -> None:
    """Every paired comparison's difference a - b with its 95% interval against 0 (the dotted lines: the target
    half-width ±w around 0 when the study asks for a precision); the label names the seeds and the answer."""
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.35 * max(len(found), 1)))
    y = np.arange(len(found))[::-1]
    for yi, row in zip(y, found.itertuples()):
        look = style(row.method, row.b, row.fidelity)
        has_interval = row.low == row.low
        err = [[row.difference - row.low], [row.high - row.difference]] if has_interval else None
        ax.errorbar([row.difference], [yi], xerr=err, color=look["color"], marker=look["marker"], capsize=3,
                    linestyle="none", mfc=look["color"] if row.fidelity == "reference" else "white")
    labels = [f"{r.comparison} ({r.fidelity}, {r.seeds} seeds): {r.answer}" for r in found.itertuples()]
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(0, color="black", linewidth=1)
    if precision is not None:
        for x in (-precision.half_width, precision.half_width):
            ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    if found.empty:
        ax.text(0.5, 0.5, "no two presets to compare", transform=ax.transAxes, ha="center")
    ax.set_xlabel("a − b, Class-IL final average accuracy (points), 95% interval")
    ax.set_title(f"{title}: paired comparisons" + (f" (dotted: target ±{precision.half_width:g})"
                                                   if precision is not None else ""), fontsize=9)
    ax.grid(alpha=0.3, axis="x")
    save_figure(fig, path, dpi=100, bbox_inches="tight", sealed=True)
    plt.close(fig)
