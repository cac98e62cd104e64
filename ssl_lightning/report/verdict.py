"""One word per comparison (column `verdict` of comparisons.csv), so the prose says no more than the data do.

The rules, applied in this order (the first that holds decides, so a comparison has exactly one word):
1. `ahead` / `behind`: the difference's 95% interval (the one the report prints, from the paired or Welch t test)
   lies wholly above / below 0 **and** the comparison stays significant after Holm's correction over its table
   (Holm p < alpha). With one comparison in the family the two conditions are the same; with more, Holm can only
   withdraw an exclusion, never add one.
2. `equivalent`: two one-sided tests (TOST) at the same alpha, each against a difference of `margin` points: both
   reject, i.e. the difference's (1 - 2 alpha) interval (90% at alpha = 0.05; same mean, standard error and
   degrees of freedom as the 95% one) lies strictly inside (-margin, +margin). TOST is per comparison (not
   Holm-corrected); `--margin` sets the margin in percentage points (default 1.0).
3. `inconclusive`: everything else - the interval reaches both past a margin and across 0 (or 0 is excluded only
   before Holm), and every comparison that was not tested (fewer than 2 seeds a side, or zero spread: a t statistic
   with zero standard error is undefined, so no interval supports a word).
Rule 1 before rule 2: a difference that is both significant and smaller than the margin is reported by its
direction (`ahead`, `behind`); `equivalent` therefore always means "no difference found, and none as large as the
margin".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats

from ssl_lightning.report.statistics import Difference

AHEAD, BEHIND, EQUIVALENT, INCONCLUSIVE = "ahead", "behind", "equivalent", "inconclusive"
VERDICTS = (AHEAD, BEHIND, EQUIVALENT, INCONCLUSIVE)
DEFAULT_MARGIN = 1.0  # points of the chosen metric


@dataclass(frozen=True)
class Equivalence:
    """TOST of |difference| < margin: the (1 - 2 alpha) interval and the larger of the two one-sided p-values."""

    low: float
    high: float
    p: float


def tested(result: Difference | None) -> bool:
    """A test with a spread to go on: an interval and a p-value (zero spread has neither)."""
    return result is not None and result.p is not None and result.low is not None and result.se > 0


def equivalence(result: Difference | None, margin: float, alpha: float) -> Equivalence | None:
    """TOST against -margin and +margin on the test's t distribution (df and standard error of `result`):
    p_lower = P(T > (d + margin) / se), p_upper = P(T < (d - margin) / se), p = max of the two; the interval is
    d -/+ t(1 - alpha, df) se. None without a test."""
    if not tested(result):
        return None
    d, se, df = result.diff, result.se, result.df
    half = float(stats.t.ppf(1 - alpha, df)) * se
    p_lower = float(stats.t.sf((d + margin) / se, df))
    p_upper = float(stats.t.cdf((d - margin) / se, df))
    return Equivalence(d - half, d + half, max(p_lower, p_upper))


def decide(interval: tuple[float, float] | None, survives_holm: bool, equivalent_interval: tuple[float, float] | None,
           margin: float) -> str:
    """The word for one comparison from its intervals (module docstring): `interval` the 95% one (None: not
    tested), `survives_holm` whether Holm p < alpha, `equivalent_interval` the (1 - 2 alpha) one."""
    if interval is not None and survives_holm:
        low, high = interval
        if low > 0:
            return AHEAD
        if high < 0:
            return BEHIND
    if equivalent_interval is not None and -margin < equivalent_interval[0] and equivalent_interval[1] < margin:
        return EQUIVALENT
    return INCONCLUSIVE


def verdict(result: Difference | None, holm_p: float | None, margin: float, alpha: float) -> str:
    """decide() on a comparison's test result and Holm p-value."""
    if not tested(result):
        return INCONCLUSIVE
    tost = equivalence(result, margin, alpha)
    return decide((result.low, result.high), holm_p is not None and holm_p < alpha,
                  None if tost is None else (tost.low, tost.high), margin)


def check_margin(margin: float) -> None:
    """A margin is a positive, finite number of points."""
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"--margin {margin}: give a positive number of percentage points (default {DEFAULT_MARGIN})")
