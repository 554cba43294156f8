"""Reproduction verdicts [ours]: does a study's cell reproduce the number the paper reports?

One rule, used by the tables, the report and the MLflow parent runs.
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
    v1 = sd**2 / n1
    if paper_sd is None:
        se, df, rule = math.sqrt(v1), n1 - 1, "one-sample t interval (paper gives no sd)"
    else:
        v2 = paper_sd**2 / paper_n
        se = math.sqrt(v1 + v2)
        df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (paper_n - 1)) if v1 + v2 > 0 else n1 - 1
        rule = f"Welch interval, paper n = {paper_n}" + (" (assumed)" if paper_n == PAPER_SEEDS_ASSUMED else "")
    half = float(stats.t.ppf(0.975, df)) * se
    low, high = diff - half, diff + half
    word = "reproduced" if low <= 0 <= high else ("above" if low > 0 else "below")
    return Verdict(mean, sd, n1, paper_mean, paper_sd, paper_n, diff, low, high, word, rule)
