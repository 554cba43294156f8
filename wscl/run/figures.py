"""The figure of one run: its Class-IL and Task-IL accuracy matrices as heatmaps (logged with the run to
MLflow; the study's mean matrices use the same drawing)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from wscl.core.safe_io import save_figure  # noqa: E402


def matrix_of(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def heatmap(ax, rows, title: str, small: bool = False):
    """One accuracy matrix (rows: after training task i; columns: evaluated task j) with its values written in;
    ``small`` for a panel of a grid. Returns the image (for a colour bar)."""
    R = matrix_of(rows)
    im = ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
    for i, j in zip(*np.nonzero(~np.isnan(R))):
        ax.text(j, i, f"{R[i, j]:.0f}", ha="center", va="center", fontsize=6 if small else 7,
                color="white" if R[i, j] < 60 else "black")
    ticks = {"fontsize": 7} if small else {}
    ax.set_xticks(range(R.shape[1]), [str(k + 1) for k in range(R.shape[1])], **ticks)
    ax.set_yticks(range(R.shape[0]), [str(k + 1) for k in range(R.shape[0])], **ticks)
    ax.set_xlabel("evaluated task", **ticks)
    ax.set_ylabel("after training task", **ticks)
    ax.set_title(title, fontsize=8 if small else None)
    return im


def accuracy_matrix_figure(matrices: list, titles: list[str], suptitle: str, path: Path | None = None):
    """Accuracy-matrix heatmaps side by side; saved to ``path`` (and closed), or returned when no path."""
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    for ax, rows, title in zip(axes[0], matrices, titles):
        im = heatmap(ax, rows, title)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy (%)")
    fig.suptitle(suptitle, fontsize=9)
    if path is None:
        return fig
    save_figure(fig, path, dpi=110, bbox_inches="tight", sealed=True)
    plt.close(fig)
    return None


def run_accuracy_figure(metrics: dict, path: Path | None = None):
    """The run's Class-IL and Task-IL accuracy matrices; saved to ``path``, or returned as a figure."""
    return accuracy_matrix_figure([metrics["class_il"]["accuracy_matrix"], metrics["task_il"]["accuracy_matrix"]],
                                  ["Class-IL", "Task-IL"], f"{metrics['dataset']} {metrics['method']} "
                                  f"{metrics['preset']} seed {metrics['seed']} ({metrics['fidelity']})", path)
