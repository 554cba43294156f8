import math

import numpy as np
import pytest
from scipy import stats

from wscl.reproduction import difference, verdict


def test_difference_is_welchs_interval_between_two_sets_of_seeds():
    a, b = [71.0, 73.5, 70.2, 74.1], [65.0, 69.9, 61.2]
    d = difference(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.difference == pytest.approx(np.mean(a) - np.mean(b))
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))
    assert d.verdict == ("higher" if ci.low > 0 else "no clear difference")
    assert difference(b, a).verdict in ("lower", "no clear difference")
    assert difference([1.0, 2.0, 3.0], [1.5, 2.5, 2.0]).verdict == "no clear difference"
    assert difference([1.0], [2.0, 3.0]).verdict == "too few seeds" and math.isnan(difference([1.0], [2.0]).low)


def test_verdict_keeps_its_rule():
    ours = [70.1, 72.3, 69.8, 71.0, 70.5]
    one = verdict(ours, 75.0, None)  # the paper gives no sd: a one-sample t interval
    ci = stats.ttest_1samp(ours, 75.0).confidence_interval(0.95)
    assert (one.low, one.high) == pytest.approx((ci.low - 75.0, ci.high - 75.0)) and one.verdict == "below"
    welch = verdict(ours, 71.0, 1.5)
    paper = np.random.default_rng(0).normal(size=5)
    paper = 71.0 + (paper - paper.mean()) / paper.std(ddof=1) * 1.5  # five seeds with exactly that mean and sd
    ci = stats.ttest_ind(ours, paper, equal_var=False).confidence_interval(0.95)
    assert (welch.low, welch.high) == pytest.approx((ci.low, ci.high)) and welch.verdict == "reproduced"
    assert verdict([70.0, 71.0], 71.0, 1.0).verdict == "too few seeds"
