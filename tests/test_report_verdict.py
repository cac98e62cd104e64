"""The report's verdict words, TOST, probability of improvement and the verdict paragraph, checked by hand on
constructed intervals and tiny inputs (ssl_lightning/report/verdict.py, improvement.py, paragraph.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.aggregate import build_cells
from ssl_lightning.report.collect import Run
from ssl_lightning.report.comparisons import FIELDS, build_comparisons, csv_row, render_comparisons
from ssl_lightning.report.improvement import Improvement, improvement, probability_of_improvement
from ssl_lightning.report.statistics import Difference, paired_difference
from ssl_lightning.report.table import build_tables, render_tables
from ssl_lightning.report.verdict import (
    AHEAD,
    BEHIND,
    EQUIVALENT,
    INCONCLUSIVE,
    decide,
    equivalence,
    verdict,
)
from tests.conftest import call_main

# df = 2 closed forms of Student's t: CDF 1/2 + t / (2 sqrt(2 + t^2)); one-sided 95% quantile t^2 = 1.62 / 0.19
T95_ONE_SIDED_DF2 = math.sqrt(2 * 0.9**2 / (1 - 0.9**2))


def sf_df2(t: float) -> float:
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


# ---- the rule, on constructed intervals ----

def test_each_word_from_constructed_intervals():
    assert decide((0.5, 2.0), True, (0.7, 1.8), 1.0) == AHEAD
    assert decide((-2.0, -0.3), True, (-1.8, -0.5), 1.0) == BEHIND
    assert decide((-0.8, 0.6), False, (-0.6, 0.4), 1.0) == EQUIVALENT
    assert decide((-3.0, 2.0), False, (-2.5, 1.5), 1.0) == INCONCLUSIVE
    assert decide(None, False, None, 1.0) == INCONCLUSIVE  # not tested


def test_the_rules_are_ordered_and_holm_can_only_withdraw_an_exclusion():
    # significant and inside the margin: the direction wins, never both words
    assert decide((0.1, 0.5), True, (0.15, 0.45), 1.0) == AHEAD
    # 0 excluded before Holm only: no direction; then equivalence decides
    assert decide((0.1, 0.9), False, (0.2, 0.8), 1.0) == EQUIVALENT
    assert decide((0.1, 2.5), False, (0.3, 2.2), 1.0) == INCONCLUSIVE
    # the equivalence interval must lie strictly inside the margin; a wider margin turns it equivalent
    assert decide((-1.5, 0.5), False, (-1.0, 0.3), 1.0) == INCONCLUSIVE
    assert decide((-1.5, 0.5), False, (-1.0, 0.3), 2.0) == EQUIVALENT
    # Holm significant but an interval that crosses 0 cannot happen; if it did, no direction is claimed
    assert decide((-0.1, 0.5), True, (5.0, 6.0), 1.0) == INCONCLUSIVE


def test_tost_matches_a_hand_computation_df2():
    result = paired_difference([80.0, 80.5, 80.3], [80.2, 80.1, 80.4])  # differences -0.2, +0.4, -0.1
    diffs = [-0.2, 0.4, -0.1]
    d, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(3)
    tost = equivalence(result, 1.0, 0.05)
    half = T95_ONE_SIDED_DF2 * se
    assert (tost.low, tost.high) == (pytest.approx(d - half), pytest.approx(d + half))
    # p = max(P(T > (d + m)/se), P(T < (d - m)/se)); by symmetry P(T < x) = sf(-x)
    assert tost.p == pytest.approx(max(sf_df2((d + 1.0) / se), sf_df2(-(d - 1.0) / se)))
    assert tost.p < 0.05 and tost.low > -1 and tost.high < 1
    assert result.low < 0 < result.high  # the 95% interval crosses 0: no direction
    assert verdict(result, result.p, 1.0, 0.05) == EQUIVALENT
    assert verdict(result, result.p, 0.5, 0.05) == INCONCLUSIVE  # 90% interval [-0.51, +0.58] not inside ±0.5
    assert equivalence(result, 0.5, 0.05).p > 0.05  # the p-value agrees with the interval


def test_an_untested_or_zero_spread_comparison_is_inconclusive():
    flat = paired_difference([81.0, 82.0, 83.0], [80.0, 81.0, 82.0])  # every difference exactly +1: no spread
    assert flat.p is None and equivalence(flat, 5.0, 0.05) is None
    assert verdict(flat, None, 5.0, 0.05) == INCONCLUSIVE
    assert verdict(None, None, 1.0, 0.05) == INCONCLUSIVE
    behind = Difference("paired t", -2.0, -3.0, -1.0, 0.001, 9.0, 0.44)
    assert verdict(behind, 0.004, 1.0, 0.05) == BEHIND and verdict(behind, 0.2, 1.0, 0.05) == INCONCLUSIVE


# ---- probability of improvement ----

def test_probability_of_improvement_by_hand():
    assert probability_of_improvement([1, 2], [0, 3]) == 0.5  # wins (1,0), (2,0); loses (1,3), (2,3)
    assert probability_of_improvement([2], [1]) == 1.0
    assert probability_of_improvement([1, 1], [1]) == 0.5  # ties count half
    assert probability_of_improvement([1, 3, 5], [2, 4]) == pytest.approx(3 / 6)  # 3>2, 5>2, 5>4
    assert probability_of_improvement([0.7 + 0.1], [0.8]) == 0.5  # float rounding is a tie


def test_every_seed_weighs_the_same_whatever_its_splits():
    # seed 0 has three splits that lose, seed 1 one split that wins: 1/2, not the 1/4 of a plain mean over runs
    found = improvement({0: [1.0, 1.0, 1.0], 1: [3.0]}, {0: [2.0]})
    assert found.p == pytest.approx(0.5) and found.low is None and found.high is None  # one baseline seed
    assert improvement({0: [1.0, 2.0]}, {0: [0.0, 3.0]}).p == 0.5


def test_the_bootstrap_interval_is_reproducible_and_brackets_the_estimate():
    method = {s: [70.0 + s + 0.3 * k for k in range(3)] for s in range(5)}
    baseline = {s: [71.0 + 0.5 * s - 0.2 * k for k in range(3)] for s in range(5)}
    first, second = improvement(method, baseline), improvement(method, baseline)
    assert first == second  # seeded: the same runs give the same interval
    assert 0.0 <= first.low <= first.p <= first.high <= 1.0 and first.low < first.high
    pairs = [(x, y) for xs in method.values() for x in xs for ys in baseline.values() for y in ys]
    assert first.p == pytest.approx(sum((x > y) + 0.5 * (x == y) for x, y in pairs) / len(pairs))
    assert improvement({0: [9.0], 1: [8.0]}, {0: [1.0, 2.0], 1: [3.0]}) == Improvement(1.0, 1.0, 1.0)


# ---- comparisons.csv and the paragraph ----

def _run(experiment: str, seed: int, acc: float) -> Run:
    return Run(results_path=Path("/sweep") / f"{experiment}_{seed}" / "results.json", ok=True, experiment=experiment,
               data="synthetic", protocol="linear", fraction=0.05, seed=seed, variant=(), test_loss=1.0,
               test_acc=acc, error=None, split_seed=seed)


ACCS = {"simclr": [0.800, 0.805, 0.803], "rotation": [0.7000, 0.7010, 0.7030],
        "raw_pixels": [0.802, 0.801, 0.804], "supervised": [0.600, 0.610, 0.620]}


def _comparisons(margin: float = 1.0):
    cells = build_cells([_run(e, s, a) for e, accs in ACCS.items() for s, a in enumerate(accs)])
    return cells, {(c.method.label, c.baseline.label): c for c in build_comparisons(cells, margin)}


def test_comparisons_csv_carries_verdict_margin_and_p_improvement():
    _, comparisons = _comparisons()
    assert FIELDS[-8:] == ("verdict", "margin", "equivalence_ci_low", "equivalence_ci_high", "tost_p_value",
                           "p_improvement", "p_improvement_ci_low", "p_improvement_ci_high")
    simclr = csv_row(comparisons[("SimCLR", "Raw pixels")])  # +0.033 points, 90% interval inside ±1
    assert (simclr["verdict"], simclr["margin"]) == (EQUIVALENT, "1.0")
    assert float(simclr["p_improvement"]) == pytest.approx(5 / 9)  # 80.0 wins 0 of 3, 80.5 3, 80.3 2
    rotation = csv_row(comparisons[("Rotation", "Raw pixels")])
    assert rotation["verdict"] == BEHIND and float(rotation["p_improvement"]) == 0.0
    assert csv_row(comparisons[("SimCLR", "Random encoder")])["verdict"] == AHEAD
    _, wide = _comparisons(margin=20.0)
    assert csv_row(wide[("Rotation", "Raw pixels")])["verdict"] == BEHIND  # direction before equivalence


def test_each_table_ends_with_its_verdict_paragraph():
    cells, comparisons = _comparisons()
    text = render_tables(build_tables(cells), Path("/sweep"), list(comparisons.values()))
    last = text.strip().split("\n\n")[-1]
    assert last.startswith("Verdicts (ahead/behind: the 95% interval excludes 0 after Holm; equivalent: two "
                           "one-sided tests at α=0.05, the 90% interval within ±1 point;")
    rotation = comparisons[("Rotation", "Raw pixels")]
    result = rotation.result
    assert (f"Rotation vs Raw pixels (linear, 5%): behind by {abs(result.diff):.2f} points "
            f"[{result.low:+.2f}, {result.high:+.2f}]; P(improvement) 0.00 [0.00, 0.00].") in last
    tost = comparisons[("SimCLR", "Raw pixels")].equivalence
    assert (f"SimCLR vs Raw pixels (linear, 5%): equivalent within ±1 point (90% interval [{tost.low:+.2f}, "
            f"{tost.high:+.2f}]); P(improvement)") in last
    assert last.count(" vs ") == len(comparisons)  # one sentence per comparison of the table, nothing else
    sections = render_comparisons(list(comparisons.values())).split("\n## ")
    for section in sections:
        assert "margin ±1 point" in section.splitlines()[0]
        assert section.strip().split("\n\n")[-1].startswith("Verdicts (")


@pytest.mark.parametrize("margin", ["0", "-1", "nan"])
def test_a_margin_that_is_not_a_positive_number_is_one_line(tmp_path, margin):
    done = call_main(report_main, [str(tmp_path), f"--margin={margin}"], tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"error: --margin {float(margin)}: give a positive number of percentage points "
                                   "(default 1.0)")
