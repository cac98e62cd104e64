"""Interval estimates and tests for the report: t-based 95% CIs (one or two levels), paired and Welch t-tests,
Holm's correction over a planned family, and the smallest difference a design detects with 80% power.

Kept apart from the tables so the arithmetic can be checked against a hand computation on fixed numbers.

Zero spread. Accuracies are stored as float32, so two runs that differ by exactly k test images give differences
that disagree in the 7th significant digit. A spread at or below `SPREAD_TOLERANCE` times the values' magnitude
(float32's relative precision is 6e-8; the tolerance is 1e-6, i.e. 1e-4 points on a 0-100 scale, while one test
image in 100,000 is 1e-3 points) counts as exactly zero: the interval is the point itself and there is no
p-value (a t statistic with zero standard error is undefined), whatever the rounding did.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

from scipy import optimize, stats

LEVEL = 0.95
POWER = 0.80
LARGE_DF = 1e4
SPREAD_TOLERANCE = 1e-6  # relative to max(1, largest |value|): spreads below it are float rounding, not variation


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided critical value of Student's t: P(|T| <= q) = level."""
    return float(stats.t.ppf(0.5 + level / 2, df))


def two_sided_p(t_value: float, df: float) -> float:
    return float(2 * stats.t.sf(abs(t_value), df))


def refuse_nan(values: Sequence[float | None], what: str) -> None:
    """A NaN (or infinity) would silently poison a mean or an ordering: refuse it loudly."""
    bad = [v for v in values if v is not None and not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what} holds a non-finite value ({bad[0]!r}); drop or fix that run before testing")


def negligible(spread: float, values: Sequence[float]) -> bool:
    """True when a standard deviation is float rounding rather than variation (see the module docstring)."""
    scale = max([1.0, *(abs(v) for v in values)])
    return spread <= SPREAD_TOLERANCE * scale


def _stdev(values: Sequence[float], scale_of: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1), snapped to 0.0 when it is only rounding."""
    spread = statistics.stdev(values)
    return 0.0 if negligible(spread, scale_of) else spread


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95% CI (None with fewer than two values: no spread to estimate).

    n counts the independent units the interval is over (runs, or pretext seeds for a two-level estimate)."""

    n: int
    mean: float | None
    std: float | None
    low: float | None
    high: float | None


def mean_ci(values: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean ± t(n-1) * s / sqrt(n), s the sample standard deviation (ddof=1; 0 when only rounding)."""
    refuse_nan(values, "the values of an interval")
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(values)
    if n == 1:
        return Estimate(1, mean, None, None, None)
    std = _stdev(values, values)
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return Estimate(n, mean, std, mean - half, mean + half)


def group_means(groups: Mapping[Hashable, Sequence[float]]) -> list[float]:
    """Level one of a two-level estimate: the mean over each group's values (label splits of one pretext seed)."""
    for values in groups.values():
        refuse_nan(values, "the values of an interval")
    return [statistics.fmean(values) for values in groups.values() if values]


def two_level_ci(groups: Mapping[Hashable, Sequence[float]], level: float = LEVEL) -> Estimate:
    """Runs nested in pretext seeds (several label splits per encoder): average the splits of each seed, then the t
    interval over the seeds' means (df = seeds - 1). Splits of one encoder are not independent replicates of the
    method; treating them so would shrink the interval by about sqrt(splits). n = the number of seeds."""
    return mean_ci(group_means(groups), level)


PAIRED, PAIRED_BY_SEED, WELCH = "paired t", "paired t (by seed)", "Welch t"


@dataclass(frozen=True)
class Difference:
    """a - b with its 95% CI and two-sided p-value; p is None when the differences have zero spread (the interval
    is then the point [diff, diff]). se is the standard error of diff, df its degrees of freedom."""

    test: str
    diff: float
    low: float | None
    high: float | None
    p: float | None
    df: float
    se: float = 0.0


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL,
                      test: str = PAIRED) -> Difference:
    """Paired t-test on d_i = a_i - b_i (a[i] and b[i] share a replicate): df = n - 1."""
    refuse_nan([*a, *b], "a paired test")
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("a paired test needs two equally long lists of at least 2 values")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs)
    std = _stdev(diffs, [*a, *b])
    df = float(len(diffs) - 1)
    if std == 0.0:
        return Difference(test, mean, mean, mean, None, df, 0.0)
    se = std / math.sqrt(len(diffs))
    half = t_quantile(df, level) * se
    return Difference(test, mean, mean - half, mean + half, two_sided_p(mean / se, df), df, se)


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Difference:
    """Welch's unequal-variance t-test with the Welch-Satterthwaite degrees of freedom."""
    refuse_nan([*a, *b], "Welch's test")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("Welch's test needs at least 2 values on each side")
    diff = statistics.fmean(a) - statistics.fmean(b)
    sa, sb = _stdev(a, [*a, *b]), _stdev(b, [*a, *b])
    va, vb = sa**2 / len(a), sb**2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(WELCH, diff, diff, diff, None, float(len(a) + len(b) - 2), 0.0)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = t_quantile(df, level) * se
    return Difference(WELCH, diff, diff - half, diff + half, two_sided_p(diff / se, df), df, se)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values in the input order over the whole planned family.

    Every entry is one planned comparison. None means "planned but not tested" (too few runs, zero spread): it
    stays None, yet it counts in the family size m, as a p-value of 1 would, so the correction holds for the
    family the report states. Sorted ascending, the k-th smallest tested p (k = 0..) becomes max over j <= k of
    min(1, (m - j) * p_(j)). A NaN or a value outside [0, 1] is refused: it has no place in an ordering.
    """
    for p in p_values:
        if p is not None and not (isinstance(p, int | float) and 0.0 <= p <= 1.0):
            raise ValueError(f"holm() got p-value {p!r}; every p must be in [0, 1] or None (not tested)")
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(p_values)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def detectable_difference(se: float, df: float, alpha: float, power: float = POWER) -> float | None:
    """The smallest true difference a two-sided t-test at `alpha` rejects with probability `power`, for a design
    whose difference has standard error `se` on `df` degrees of freedom (the noncentral t, noncentrality
    delta / se). None when there is no spread to size it from (se = 0) or no degrees of freedom."""
    if not (se > 0 and df > 0 and math.isfinite(se)):
        return None
    critical = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(noncentrality: float) -> float:
        if df > LARGE_DF:  # scipy's noncentral t returns NaN there; it is a shifted normal by then
            rejects = stats.norm.sf(critical - noncentrality) + stats.norm.cdf(-critical - noncentrality)
        else:
            lower = float(stats.nct.cdf(-critical, df, noncentrality))  # far tail: scipy may give NaN for ~0
            rejects = stats.nct.sf(critical, df, noncentrality) + (0.0 if math.isnan(lower) else lower)
        return float(rejects) - power

    upper = critical + 1.0
    while shortfall(upper) < 0:
        upper *= 2
    return float(optimize.brentq(shortfall, 0.0, upper, xtol=1e-10)) * se
