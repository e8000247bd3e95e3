"""Means with 95% confidence intervals, and the only comparison the micro study is allowed to make.

A result of the study is a metric measured once per training seed (the test prompts and their noise seeds are the
same for every run). The interval is Student's t interval of the mean over seeds: `mean +- t(0.975, n - 1) * s /
sqrt(n)`, with `s` the sample standard deviation across seeds. It covers the variation a new training seed brings,
which is what a claim about a recipe needs; the sampling noise of the test prompts is inside each seed's value.
With three seeds `t` is 4.30, so intervals are wide on purpose: two recipes are called different only when their
intervals do not overlap, and "no difference detected" is the honest answer otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from scipy import stats

CONFIDENCE = 0.95
INTERVAL_KIND = "Student's t interval of the mean over training seeds (95%)"


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """
    The mean of `values` and its Student's t confidence interval.

    Args:
        values (`Sequence[float]`): one measurement per seed (finite).
        confidence (`float`, *optional*, defaults to 0.95): the interval's coverage.

    Returns:
        `dict[str, Any]`: `{"mean", "ci95": [lo, hi], "values", "n"}`; with one value the interval is `[mean, mean]`
        and says nothing (`n` tells).
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_ci needs at least one value.")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"mean_ci needs finite values, got {values}.")
    n = len(values)
    mean = math.fsum(values) / n
    if n == 1:
        return {"mean": mean, "ci95": [mean, mean], "values": values, "n": 1}
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "values": values, "n": n}


def compare(a: dict[str, Any], b: dict[str, Any]) -> str:
    """
    `"higher"` or `"lower"` when `a`'s interval lies wholly above or below `b`'s, else `"no difference detected"`.

    Args:
        a, b (`dict[str, Any]`): results of [`mean_ci`].
    """
    (a_lo, a_hi), (b_lo, b_hi) = a["ci95"], b["ci95"]
    if a_lo > b_hi:
        return "higher"
    if a_hi < b_lo:
        return "lower"
    return "no difference detected"


def binomial_ci(successes: int, trials: int, confidence: float = CONFIDENCE) -> list[float]:
    """
    Wilson's score interval of a proportion (caption exactness over clips or captions): it stays inside [0, 1] and
    behaves at 0 and `trials` successes, where the normal approximation does not.

    Args:
        successes (`int`): how many were right.
        trials (`int`): out of how many (> 0).
        confidence (`float`, *optional*, defaults to 0.95): the interval's coverage.

    Returns:
        `list[float]`: `[lo, hi]`.
    """
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"binomial_ci needs 0 <= successes <= trials and trials > 0, got {successes}/{trials}.")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return [max(0.0, centre - half), min(1.0, centre + half)]
