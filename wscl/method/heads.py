"""Head assignment [code]: which output head each class of a new task takes.

Before training task t > 0 the current model classifies the new task's training images; the count
matrix C[i, h] says how many images of new class i land on free head h. ``greedy`` (the authors'
rule) repeatedly takes the global maximum (first in row-major order on ties) and blanks its row and
column; ``hungarian`` [ours] maximises the total count with scipy's assignment solver.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

UNAVAILABLE = -1


def count_matrix(predicted_heads: np.ndarray, class_rows: np.ndarray, n_classes: int,
                 free_heads: np.ndarray) -> np.ndarray:
    """C[i, h] for every head; columns of heads already taken are UNAVAILABLE."""
    n_heads = len(free_heads)
    counts = np.zeros((n_classes, n_heads), dtype=np.int64)
    np.add.at(counts, (class_rows, predicted_heads), 1)
    counts[:, ~free_heads] = UNAVAILABLE
    return counts


def assign_greedy(counts: np.ndarray) -> np.ndarray:
    """Head of each row of ``counts``, by repeatedly taking the global maximum."""
    counts = counts.copy()
    heads = np.full(counts.shape[0], -1, dtype=np.int64)
    for _ in range(counts.shape[0]):
        row, col = np.unravel_index(np.argmax(counts), counts.shape)  # argmax: first maximum, row-major
        if counts[row, col] == UNAVAILABLE:
            raise ValueError("fewer free heads than new classes")
        heads[row] = col
        counts[row, :] = UNAVAILABLE
        counts[:, col] = UNAVAILABLE
    return heads


def assign_hungarian(counts: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment  # imported when used: scipy.optimize is slow to import
    free = np.flatnonzero((counts != UNAVAILABLE).any(axis=0))
    if len(free) < counts.shape[0]:
        raise ValueError("fewer free heads than new classes")
    rows, cols = linear_sum_assignment(counts[:, free], maximize=True)
    heads = np.full(counts.shape[0], -1, dtype=np.int64)
    heads[rows] = free[cols]
    return heads


ASSIGNERS = {"greedy": assign_greedy, "hungarian": assign_hungarian}


def assign_task(book: HeadBook, rule: str, classes: np.ndarray, first_task: bool,
                predict: Callable[[], tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Heads of a new task's ``classes`` by ``scenario.head_assignment``, recorded in ``book``.
    ``predict()`` gives the current network's head and the class of each of the task's training images."""
    if rule == "class_order":
        heads = classes.copy()  # [code] plain baselines: head h is class h
    elif first_task:
        heads = np.arange(len(classes))
    else:
        predicted, labels = predict()
        heads = ASSIGNERS[rule](count_matrix(predicted, labels - classes[0], len(classes), book.free_heads))
    book.assign(classes, heads)
    return heads


class HeadBook:
    """Which head each primary class took, and which dream class each still-free head dreams of."""

    def __init__(self, n_classes: int, n_heads: int, dream_binding: np.ndarray):
        self.class_to_head = np.full(n_classes, -1, dtype=np.int64)
        self.head_taken = np.zeros(n_heads, dtype=bool)
        self.dream_binding = np.asarray(dream_binding, dtype=np.int64)  # dream class per head, -1 = none

    def assign(self, classes: np.ndarray, heads: np.ndarray) -> None:
        if self.head_taken[heads].any():
            raise ValueError(f"heads {heads[self.head_taken[heads]].tolist()} are already assigned")
        if (self.class_to_head[classes] >= 0).any():
            raise ValueError("a class already has a head")
        self.class_to_head[classes] = heads
        self.head_taken[heads] = True

    @property
    def free_heads(self) -> np.ndarray:
        return ~self.head_taken

    def heads_of(self, classes: np.ndarray) -> np.ndarray:
        return self.class_to_head[classes]

    def dreaming_heads(self) -> list[tuple[int, int]]:
        """(head, dream class) for every free head that has a dream class."""
        return [(int(h), int(self.dream_binding[h])) for h in np.flatnonzero(self.free_heads)
                if self.dream_binding[h] >= 0]

    def state_dict(self) -> dict:
        return {"class_to_head": self.class_to_head.tolist(), "head_taken": self.head_taken.tolist(),
                "dream_binding": self.dream_binding.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.class_to_head = np.asarray(state["class_to_head"], dtype=np.int64)
        self.head_taken = np.asarray(state["head_taken"], dtype=bool)
        self.dream_binding = np.asarray(state["dream_binding"], dtype=np.int64)


def bind_dreams(n_heads: int, n_dream_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Dream class bound to each head, fixed once per run [code]: head h dreams of class h when the
    auxiliary set has exactly as many classes as there are heads; with more auxiliary classes, a random
    draw of distinct classes; with fewer [ours], every dream class, in random order, on the first heads."""
    binding = np.full(n_heads, -1, dtype=np.int64)
    if n_dream_classes == n_heads:
        return np.arange(n_heads, dtype=np.int64)
    chosen = rng.choice(n_dream_classes, size=min(n_heads, n_dream_classes), replace=False)
    binding[: len(chosen)] = chosen
    return binding
