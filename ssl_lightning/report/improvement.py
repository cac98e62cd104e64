"""Probability of improvement (column `p_improvement` of comparisons.csv), in the spirit of rliable's.

What it computes. Take one run of the method (X) and one run of the baseline (Y), each drawn as a new encoder
(seed) and a new label split of that seed; p_improvement estimates P(X > Y) + 0.5 P(X = Y), the chance that the
method scores higher, ties counting half. The estimate is the mean of that score over every pair (method run,
baseline run), each run weighted 1 / (seeds of its side x splits of its seed), so that every seed weighs the same
whatever its number of splits (with one split per seed: the plain mean over all n_method x n_baseline pairs, the
Mann-Whitney U statistic divided by n_method n_baseline). The pairs are not matched on seed or split: it describes
the spread of the two sides, not the paired difference the t test uses. Two values within float rounding of each
other (statistics.SPREAD_TOLERANCE) are a tie. A run that pools test folds is one run (folds.py).

The interval: a two-level percentile bootstrap, resampled on each side independently - draw that side's seeds
with replacement, then within each drawn seed its splits with replacement - recomputing the weighted score each
time; the 2.5th and 97.5th percentiles of `RESAMPLES` resamples. The random generator is seeded (`RNG_SEED`) for
every comparison, so the same runs give the same interval on every report. No interval below 2 seeds a side.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ssl_lightning.report.statistics import LEVEL, SPREAD_TOLERANCE, refuse_nan

RESAMPLES = 2000
RNG_SEED = 0


@dataclass(frozen=True)
class Improvement:
    p: float
    low: float | None
    high: float | None


def _scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """s[i, j] = 1 if x_i > y_j, 0.5 on a tie (within float rounding), 0 otherwise."""
    diff = x[:, None] - y[None, :]
    scale = np.maximum(1.0, np.maximum(np.abs(x)[:, None], np.abs(y)[None, :]))
    tie = np.abs(diff) <= SPREAD_TOLERANCE * scale
    return np.where(tie, 0.5, (diff > 0).astype(float))


def probability_of_improvement(x: Sequence[float], y: Sequence[float]) -> float:
    """P(X > Y) + 0.5 P(X = Y) over all pairs of x and y, equally weighted: [1, 2] vs [0, 3] -> 0.5."""
    refuse_nan([*x, *y], "a probability of improvement")
    if not x or not y:
        raise ValueError("a probability of improvement needs at least one value on each side")
    return float(_scores(np.asarray(x, float), np.asarray(y, float)).mean())


def _probability(value: float) -> float:
    """A weighted mean of 0, 0.5 and 1, rid of the float error of summing the weights (0.9999999999999998 -> 1)."""
    return min(1.0, max(0.0, round(float(value), 12)))


def _flatten(groups: Mapping[Hashable, Sequence[float]]) -> tuple[np.ndarray, list[int]]:
    """The values in seed order and the number of splits of each seed."""
    values = [v for group in groups.values() for v in group]
    return np.asarray(values, float), [len(group) for group in groups.values() if group]


def _weights(sizes: list[int]) -> np.ndarray:
    """Each seed 1 / seeds, shared equally by its splits."""
    return np.concatenate([np.full(n, 1.0 / (len(sizes) * n)) for n in sizes])


def _resampled_weights(sizes: list[int], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """resamples x runs: seeds drawn with replacement, then each drawn seed's splits with replacement; a run's
    weight = (times drawn) / (seeds x splits of its seed), so every resample's weights sum to 1."""
    seeds = len(sizes)
    draws = rng.multinomial(seeds, np.full(seeds, 1.0 / seeds), size=resamples)  # resamples x seeds
    blocks = [rng.multinomial(draws[:, g] * n, np.full(n, 1.0 / n)) / (seeds * n) for g, n in enumerate(sizes)]
    return np.concatenate(blocks, axis=1)


def improvement(method: Mapping[Hashable, Sequence[float]], baseline: Mapping[Hashable, Sequence[float]],
                resamples: int = RESAMPLES, level: float = LEVEL) -> Improvement | None:
    """p_improvement of method over baseline from seed -> split values, with its bootstrap interval (module
    docstring); None when a side has no value."""
    x, x_sizes = _flatten(method)
    y, y_sizes = _flatten(baseline)
    if not x_sizes or not y_sizes:
        return None
    refuse_nan([*x, *y], "a probability of improvement")
    scores = _scores(x, y)
    point = _probability(_weights(x_sizes) @ scores @ _weights(y_sizes))
    if len(x_sizes) < 2 or len(y_sizes) < 2:
        return Improvement(point, None, None)
    rng = np.random.default_rng(RNG_SEED)
    wx = _resampled_weights(x_sizes, rng, resamples)
    wy = _resampled_weights(y_sizes, rng, resamples)
    samples = np.sum((wx @ scores) * wy, axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Improvement(point, _probability(low), _probability(high))
