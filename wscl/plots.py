"""Figures: accuracy-matrix heatmaps, accuracy-vs-task curves, ablation bars, frozen blocks per task."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _matrix(rows) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def accuracy_matrix_figure(matrices: list, titles: list[str], suptitle: str, path: Path) -> None:
    fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices), 3.8), squeeze=False)
    for ax, rows, title in zip(axes[0], matrices, titles):
        R = _matrix(rows)
        im = ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
        T = R.shape[0]
        for i in range(T):
            for j in range(T):
                if not np.isnan(R[i, j]):
                    ax.text(j, i, f"{R[i, j]:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if R[i, j] < 60 else "black")
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after training task")
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
        ax.set_title(title)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="accuracy (%)")
    fig.suptitle(suptitle, fontsize=9)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
