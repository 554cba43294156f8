"""Continual-learning metrics [code] from the accuracy matrix R (spec §4).

``R[i][j]`` is the accuracy (percent) on task j after training task i. Entries ``R[i][i+1]`` hold the
accuracy on task i+1 right after its head assignment, before training on it (for forward transfer);
entries further right are NaN.
"""
from __future__ import annotations

import numpy as np


def final_average_accuracy(R: np.ndarray) -> float:
    T = R.shape[0]
    return float(np.mean(R[T - 1, :T]))


def forgetting(R: np.ndarray) -> float:
    """Mean over j < T-1 of max_k R[k][j] - R[T-1][j], k over rows that trained on task j (k >= j)."""
    T = R.shape[0]
    if T < 2:
        return 0.0
    drops = [np.max(R[j:T, j]) - R[T - 1, j] for j in range(T - 1)]
    return float(np.mean(drops))


def backward_transfer(R: np.ndarray) -> float:
    T = R.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([R[T - 1, j] - R[j, j] for j in range(T - 1)]))


def forward_transfer(R: np.ndarray, random_init: np.ndarray) -> float:
    """Mean over j >= 1 of R[j-1][j] - b_j, with b_j the random-init network's accuracy on task j."""
    T = R.shape[0]
    if T < 2:
        return 0.0
    return float(np.mean([R[j - 1, j] - random_init[j] for j in range(1, T)]))


def summary(R: np.ndarray, random_init: np.ndarray) -> dict[str, float]:
    return {"final_avg_acc": final_average_accuracy(R), "forgetting": forgetting(R),
            "bwt": backward_transfer(R), "fwt": forward_transfer(R, random_init)}


def to_json_matrix(R: np.ndarray) -> list[list[float | None]]:
    return [[None if np.isnan(v) else round(float(v), 6) for v in row] for row in R]

