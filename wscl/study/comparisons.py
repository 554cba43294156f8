"""Comparisons of two presets of one study [ours]: paired over seeds, and seeds chosen by a precision.

Runs of one seed share their scenario whatever their preset (class order, subsets, training order: the seed
fixes them all), so two presets at the same benchmark, buffer, method, fidelity and point are compared on the
seeds both have, through the per-seed differences a - b: a t interval on those differences (docs/method.md,
"Comparisons"). A study that asks for a precision (``seeds: {pilot, half_width, max}``) gets its seed count
from Stein's two-stage procedure: the pilot's standard deviation of the differences fixes the total number of
seeds of each comparison, and the final interval keeps the pilot's standard deviation and degrees of freedom,
so that its 95% confidence holds whatever the pilot showed (no optional stopping).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from wscl.settings.config import ConfigError, presets_of

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Precision:
    """A study's ``seeds: {pilot, half_width, max}``: every comparison's interval at most ±half_width, or max seeds."""
    pilot: int
    half_width: float
    max: int


def parse_seeds(spec) -> tuple[list[int], Precision | None]:
    """A study's ``seeds``: a list of seeds, a count n (seeds 0..n-1) or a precision (its pilot seeds first)."""
    if isinstance(spec, bool):
        raise ConfigError(f"seeds: {spec!r} is not a seed list, a count or {{pilot, half_width, max}}")
    if isinstance(spec, int):
        return list(range(spec)), None
    if isinstance(spec, dict):
        precision = Precision(int(spec["pilot"]), float(spec["half_width"]), int(spec["max"]))
        if precision.pilot < 2 or precision.max < precision.pilot:
            raise ConfigError(f"seeds: pilot {precision.pilot} and max {precision.max}: the pilot needs at least 2 "
                              "seeds (a standard deviation) and max at least the pilot; raise them")
        return list(range(precision.pilot)), precision
    return list(spec), None


def comparison_pairs() -> list[tuple[str, str, str]]:
    """(title, preset a, preset b) of every comparison a - b: each WSCL vs base, full vs each other WSCL, full vs
    each ablation (positive: the ablated component helps)."""
    wscl = presets_of("wscl")
    pairs = [(f"{preset} vs base", preset, "base") for preset in wscl]
    pairs += [(f"full vs {preset}", "full", preset) for preset in wscl if preset != "full"]
    pairs += [(f"full vs {preset}", "full", preset) for preset in presets_of("ablation")]
    return pairs


def t_quantile(df: int) -> float:
    return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


def stein_seeds(pilot_sd: float, precision: Precision) -> tuple[int, bool]:
    """Stein's total seed count from the pilot's sd of the differences: the smallest n >= pilot with
    t(pilot - 1) * sd / sqrt(n) <= half_width, capped at max; and whether the target was met within max."""
    if not math.isfinite(pilot_sd):  # too few healthy pilot seeds to estimate it: as many seeds as allowed
        return precision.max, False
    needed = max(precision.pilot, math.ceil((t_quantile(precision.pilot - 1) * pilot_sd / precision.half_width) ** 2))
    return min(needed, precision.max), needed <= precision.max


@dataclass(frozen=True)
class Comparison:
    """a - b over the seeds both presets have, with its 95% interval and the answer it gives."""
    a_mean: float
    b_mean: float
    seeds: int
    difference: float
    low: float
    high: float
    target: float | None    # the half-width asked for; None for a fixed seed count
    target_met: bool | None  # None for a fixed seed count
    answer: str
    rule: str
    planned: int | None = None  # the seeds Stein's procedure asked for; None for a fixed seed count

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def interval(self) -> str:
        return "no interval" if math.isnan(self.low) else f"[{self.low:+.2f}, {self.high:+.2f}]"

    @property
    def stopped(self) -> str:
        """Why the comparison has its seed count: the target met, `max` reached, seeds lost to failed runs, or the
        study's fixed count."""
        if self.planned is not None and self.seeds < self.planned:
            return f"{self.planned - self.seeds} of {self.planned} planned seeds failed"
        return "fixed seed count" if self.target_met is None else "target met" if self.target_met else "max seeds"


def answer(low: float, high: float, seeds: int, target_met: bool | None) -> str:
    """The one-line answer of an interval: it lies above 0, below 0, or contains 0 (then how large an effect it
    still allows when the precision was reached, else undecided)."""
    if math.isnan(low):
        return "too few seeds"
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    if target_met:
        return f"no effect larger than ±{math.ceil(max(-low, high) * 10) / 10:.1f}"
    return "undecided at max seeds" if target_met is False else f"undecided at {seeds} seeds"


def paired(a: dict[int, float], b: dict[int, float], precision: Precision | None = None) -> Comparison:
    """Compare presets a and b on the seeds both have ({seed: value}). Without a precision: the t interval of
    the mean per-seed difference (n - 1 degrees of freedom). With one: Stein's interval, the mean difference
    over the first n seeds ± t(pilot - 1) * pilot sd / sqrt(n), n from :func:`stein_seeds`."""
    common = sorted(set(a) & set(b))
    if precision is None:
        return _t_interval(a, b, common)
    # The pilot is seeds 0..pilot-1, as planned (study/pilot.py): a failed one is missing here, as it was there;
    # fewer than 2 healthy pilot seeds give no estimate (inf: max seeds were planned).
    pilot = [seed for seed in common if seed < precision.pilot]
    pilot_sd = float(_differences(a, b, pilot).std(ddof=1)) if len(pilot) > 1 else math.inf
    n, met = stein_seeds(pilot_sd, precision)
    used = [seed for seed in common if seed < n]  # the planned seeds 0..n-1 that both presets have
    if len(used) < 2 or not math.isfinite(pilot_sd):
        return _too_few(a, b, used, precision, n)
    diffs = _differences(a, b, used)
    half = t_quantile(precision.pilot - 1) * pilot_sd / math.sqrt(len(used))
    mean = float(diffs.mean())
    met = met and len(used) == n
    return Comparison(_mean(a, used), _mean(b, used), len(used), mean, mean - half, mean + half,
                      precision.half_width, met, answer(mean - half, mean + half, len(used), met),
                      f"Stein's two-stage interval, pilot {precision.pilot} seeds, paired", n)


def _t_interval(a: dict[int, float], b: dict[int, float], seeds: list[int]) -> Comparison:
    diffs = _differences(a, b, seeds)
    if len(seeds) < 2:
        return _too_few(a, b, seeds, None)
    mean = float(diffs.mean())
    half = t_quantile(len(seeds) - 1) * float(diffs.std(ddof=1)) / math.sqrt(len(seeds))
    return Comparison(_mean(a, seeds), _mean(b, seeds), len(seeds), mean, mean - half, mean + half, None, None,
                      answer(mean - half, mean + half, len(seeds), None), "paired t interval")


def _too_few(a, b, seeds, precision, planned: int | None = None) -> Comparison:
    diff = float(_differences(a, b, seeds).mean()) if seeds else math.nan
    return Comparison(_mean(a, seeds), _mean(b, seeds), len(seeds), diff, math.nan, math.nan,
                      precision.half_width if precision else None, None, "too few seeds", "paired", planned)


def _differences(a: dict[int, float], b: dict[int, float], seeds: list[int]) -> np.ndarray:
    return np.array([a[s] - b[s] for s in seeds], dtype=float)


def _mean(values: dict[int, float], seeds: list[int]) -> float:
    return float(np.mean([values[s] for s in seeds])) if seeds else math.nan
