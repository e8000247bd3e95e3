"""Means with confidence intervals over seeds, Wilson intervals, and the comparison rule of the micro study."""

import math

import numpy as np
import pytest

from training.micro.statistics import binomial_ci, compare, mean_ci


def test_mean_ci_is_students_t_interval():
    result = mean_ci([0.4, 0.5, 0.6])
    assert result["mean"] == pytest.approx(0.5, rel=1e-12)
    # sd = 0.1, n = 3, t(0.975, 2) = 4.302652729911275 (tables give 4.303)
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert result["ci95"] == pytest.approx([0.5 - half, 0.5 + half], rel=1e-9)
    assert result["n"] == 3 and result["values"] == [0.4, 0.5, 0.6]
    assert mean_ci([0.7])["ci95"] == [0.7, 0.7]
    with pytest.raises(ValueError, match="finite"):
        mean_ci([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials = 4000
    covered = sum(
        lo <= 0.3 <= hi for lo, hi in (mean_ci(rng.normal(0.3, 0.05, size=3))["ci95"] for _ in range(trials))
    )
    # Binomial(4000, 0.95) has a standard deviation of 0.0034: five of them either side.
    assert abs(covered / trials - 0.95) < 5 * math.sqrt(0.95 * 0.05 / trials)


def test_only_separate_intervals_are_a_difference():
    low, high = mean_ci([0.10, 0.12, 0.11]), mean_ci([0.50, 0.52, 0.51])
    assert compare(high, low) == "higher" and compare(low, high) == "lower"
    wide = mean_ci([0.1, 0.5, 0.3])
    assert compare(wide, low) == "no difference detected" == compare(low, wide)


def test_wilson_interval():
    lo, hi = binomial_ci(50, 100)
    assert lo == pytest.approx(0.4038, abs=5e-4) and hi == pytest.approx(0.5962, abs=5e-4)  # textbook values
    assert binomial_ci(0, 10)[0] == 0.0 and 0 < binomial_ci(0, 10)[1] < 0.35
    assert binomial_ci(10, 10)[1] == pytest.approx(1.0) and binomial_ci(10, 10)[0] > 0.65
    with pytest.raises(ValueError):
        binomial_ci(3, 2)
