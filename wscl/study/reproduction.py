"""Reproduction verdicts [ours]: does a study's cell reproduce the number the paper reports?

One rule, used by the tables, the report and the MLflow parent runs. Our seeds and the paper's are not paired,
so the interval is Welch's; two presets of the same study are compared paired (study/comparisons.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# The paper reports mean ± sd without its number of seeds; Mammoth-based papers use 5 [assumption].
PAPER_SEEDS_ASSUMED = 5
MIN_SEEDS = 3
VERDICTS = ("reproduced", "above", "below", "too few seeds")


@dataclass(frozen=True)
class Verdict:
    ours_mean: float
    ours_sd: float
    ours_n: int
    paper_mean: float
    paper_sd: float | None
    paper_n: int
    difference: float
    low: float          # 95% interval of ours - paper
    high: float
    verdict: str
    rule: str

    def as_dict(self) -> dict:
        return asdict(self)


def verdict(ours: list[float], paper_mean: float, paper_sd: float | None,
            paper_n: int = PAPER_SEEDS_ASSUMED) -> Verdict:
    """Compare our per-seed values with the paper's mean ± sd.

    The difference (ours - paper) gets a 95% Welch interval: standard error sqrt(s1²/n1 + s2²/n2) and
    Welch-Satterthwaite degrees of freedom. Where the paper gives no sd (its forgetting values), only
    our spread counts (a one-sample t interval, n1 - 1 degrees of freedom). Verdict: ``too few seeds``
    when we have fewer than 3; ``reproduced`` when the interval contains 0; otherwise ``above`` or
    ``below`` (ours higher or lower than the paper).
    """
    values = np.asarray(ours, dtype=float)
    n1 = len(values)
    mean = float(values.mean()) if n1 else math.nan
    sd = float(values.std(ddof=1)) if n1 > 1 else 0.0
    diff = mean - paper_mean
    if n1 < MIN_SEEDS:
        return Verdict(mean, sd, n1, paper_mean, paper_sd, paper_n, diff, math.nan, math.nan, "too few seeds",
                       f"fewer than {MIN_SEEDS} seeds")
    if paper_sd is None:
        low, high = _interval(diff, sd**2 / n1, None, n1)
        rule = "one-sample t interval (paper gives no sd)"
    else:
        low, high = _interval(diff, sd**2 / n1, paper_sd**2 / paper_n, n1, paper_n)
        rule = f"Welch interval, paper n = {paper_n}" + (" (assumed)" if paper_n == PAPER_SEEDS_ASSUMED else "")
    word = "reproduced" if low <= 0 <= high else ("above" if low > 0 else "below")
    return Verdict(mean, sd, n1, paper_mean, paper_sd, paper_n, diff, low, high, word, rule)


def _interval(diff: float, v1: float, v2: float | None, n1: int, n2: int | None = None) -> tuple[float, float]:
    """95% interval of a difference of means from the variances of the means (s²/n) of its two sides.

    Welch-Satterthwaite degrees of freedom; with ``v2 = None`` only the first side varies (one-sample t
    interval, n1 - 1 degrees of freedom)."""
    if v2 is None:
        se, df = math.sqrt(v1), n1 - 1
    else:
        se = math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1)) if v1 + v2 > 0 else n1 + n2 - 2
    half = float(stats.t.ppf(0.975, df)) * se
    return diff - half, diff + half
