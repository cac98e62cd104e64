"""Interval estimates and tests for the report: t-based 95% CIs, paired and Welch t-tests, Holm's correction.

Kept apart from the tables so the arithmetic can be checked against a hand computation on fixed numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats

LEVEL = 0.95


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided critical value of Student's t: P(|T| <= q) = level."""
    return float(stats.t.ppf(0.5 + level / 2, df))


def two_sided_p(t_value: float, df: float) -> float:
    return float(2 * stats.t.sf(abs(t_value), df))


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% CI (None with fewer than two values: no spread to estimate)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def mean_ci(values: list[float], level: float = LEVEL) -> Estimate:
    """Mean ± t(n-1) * s / sqrt(n), s the sample standard deviation (ddof=1)."""
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return Estimate(1, mean, None, None, None)
    std = statistics.stdev(values)
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


PAIRED, WELCH = "paired t", "Welch t"


@dataclass(frozen=True)
class Difference:
    """a - b with its 95% CI and two-sided p-value; p is None when the standard error is zero."""

    test: str
    diff: float
    low: float | None
    high: float | None
    p: float | None
    df: float


def paired_difference(a: list[float], b: list[float], level: float = LEVEL) -> Difference:
    """Paired t-test on d_i = a_i - b_i (a[i] and b[i] share seed and split seed): df = n - 1."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired test needs two equally long lists of at least 2 values")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    estimate = mean_ci(diffs, level)
    assert estimate.mean is not None and estimate.std is not None
    se = estimate.std / math.sqrt(len(diffs))
    p = two_sided_p(estimate.mean / se, len(diffs) - 1) if se > 0 else None
    return Difference(PAIRED, estimate.mean, estimate.low, estimate.high, p, float(len(diffs) - 1))


def welch_difference(a: list[float], b: list[float], level: float = LEVEL) -> Difference:
    """Welch's unequal-variance t-test with the Welch-Satterthwaite degrees of freedom."""
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs at least 2 values on each side")
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(WELCH, diff, diff, diff, None, float(len(a) + len(b) - 2))
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(df, level) * se
    return Difference(WELCH, diff, diff - half, diff + half, two_sided_p(diff / se, df), df)


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values in the input order; None (no test) stays None and is not counted.

    Sorted ascending, the k-th smallest (k = 0..m-1) becomes max over j <= k of min(1, (m - j) * p_(j)).
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
