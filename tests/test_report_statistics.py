"""The report's statistics against hand computations: t intervals, paired and Welch tests, Holm, config splits.

Expected values use closed forms of Student's t that need no library: with df=1 (Cauchy) the two-sided 95%
quantile is tan(0.475 pi); with df=2 the CDF is 1/2 + t / (2 sqrt(2 + t^2)), so the quantile is
sqrt(2 * 0.95^2 / (1 - 0.95^2)) = 4.30265272974946 and the two-sided p-value is 1 - |t| / sqrt(2 + t^2).
For a non-integer df the p-value comes from integrating the t density numerically (Simpson's rule).
"""

from __future__ import annotations

import math
import random
import statistics
import struct
from pathlib import Path

import pytest

from ssl_lightning.errors import UserError
from ssl_lightning.report.aggregate import build_cells
from ssl_lightning.report.collect import Run, split_configurations
from ssl_lightning.report.comparisons import ambiguous_baselines, build_comparisons, render_comparisons
from ssl_lightning.report.configs import flatten, relevant, varies_by_design
from ssl_lightning.report.statistics import (
    PAIRED,
    PAIRED_BY_SEED,
    WELCH,
    detectable_difference,
    holm,
    mean_ci,
    paired_difference,
    t_quantile,
    two_level_ci,
    welch_difference,
)

T95_DF1 = math.tan(0.475 * math.pi)  # 12.7062047361747
T95_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # 4.30265272974946


def p_df2(t: float) -> float:
    return 1 - abs(t) / math.sqrt(2 + t * t)


def p_numeric(t: float, df: float, steps: int = 20000) -> float:
    """Two-sided p = 1 - 2 * integral of the t density over [0, |t|], Simpson's rule."""
    const = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def density(x: float) -> float:
        return const * (1 + x * x / df) ** (-(df + 1) / 2)

    h = abs(t) / steps
    total = density(0) + density(abs(t)) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, steps))
    return 1 - 2 * total * h / 3


def test_t_quantiles_match_the_closed_forms():
    assert t_quantile(1) == pytest.approx(T95_DF1, rel=1e-9)
    assert t_quantile(2) == pytest.approx(T95_DF2, rel=1e-9)
    assert abs(T95_DF2 - 4.302652729911275) < 1e-9  # the usual printed table value


def test_mean_ci_by_hand():
    estimate = mean_ci([1.0, 2.0, 3.0])  # mean 2, s = 1, n = 3, df = 2
    half = T95_DF2 * 1.0 / math.sqrt(3)
    assert (estimate.n, estimate.mean, estimate.std) == (3, 2.0, 1.0)
    assert estimate.low == pytest.approx(2 - half, rel=1e-9) and estimate.high == pytest.approx(2 + half, rel=1e-9)
    pair = mean_ci([60.0, 64.0])  # mean 62, s = sqrt(8), df = 1
    assert pair.high - pair.mean == pytest.approx(T95_DF1 * math.sqrt(8) / math.sqrt(2), rel=1e-9)
    single = mean_ci([70.0])
    assert (single.n, single.mean, single.std, single.low, single.high) == (1, 70.0, None, None, None)
    assert mean_ci([]).mean is None


def test_paired_difference_by_hand():
    method, baseline = [70.0, 72.0, 75.0], [65.0, 70.0, 71.0]  # differences 5, 2, 4
    d_mean = 11 / 3
    d_sd = math.sqrt(((5 - d_mean) ** 2 + (2 - d_mean) ** 2 + (4 - d_mean) ** 2) / 2)
    se = d_sd / math.sqrt(3)
    result = paired_difference(method, baseline)
    assert result.test == PAIRED and result.df == 2
    assert result.diff == pytest.approx(d_mean, rel=1e-12)
    assert result.low == pytest.approx(d_mean - T95_DF2 * se, rel=1e-9)
    assert result.high == pytest.approx(d_mean + T95_DF2 * se, rel=1e-9)
    assert result.p == pytest.approx(p_df2(d_mean / se), rel=1e-9)
    assert result.p == pytest.approx(0.05330, abs=5e-5)  # t = 4.158 on 2 df


def test_welch_difference_by_hand_equal_variances_df2():
    # n = 2 on both sides with equal variances (8): df = (4 + 4)^2 / (4^2 + 4^2) = 2, se = sqrt(8)
    result = welch_difference([80.0, 84.0], [70.0, 74.0])
    se = math.sqrt(8 / 2 + 8 / 2)
    assert result.test == WELCH and result.df == pytest.approx(2.0, rel=1e-12)
    assert result.diff == 10.0
    assert (result.low, result.high) == (pytest.approx(10 - T95_DF2 * se, rel=1e-9),
                                         pytest.approx(10 + T95_DF2 * se, rel=1e-9))
    assert result.p == pytest.approx(p_df2(10 / se), rel=1e-9)


def test_welch_difference_by_hand_unequal_sizes():
    a, b = [88.1, 86.4, 90.3], [80.2, 84.9, 79.5, 82.0]
    va = statistics.variance(a) / 3
    vb = statistics.variance(b) / 4
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    result = welch_difference(a, b)
    assert result.df == pytest.approx(df, rel=1e-12) and 4 < df < 5
    assert result.diff == pytest.approx(statistics.mean(a) - statistics.mean(b), rel=1e-12)
    assert result.p == pytest.approx(p_numeric(t, df), rel=1e-6)


def test_tests_refuse_too_few_values():
    with pytest.raises(ValueError):
        paired_difference([1.0], [2.0])
    with pytest.raises(ValueError):
        welch_difference([1.0, 2.0], [3.0])


def test_zero_variance_gives_no_p_value():
    assert paired_difference([71.0, 72.0], [70.0, 71.0]).p is None


def _float32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def test_a_constant_gap_of_k_test_images_is_the_same_answer_whatever_the_rounding():
    # accuracies as the pipeline stores them: float32 in 0-1, on 10,000 test images; the method is always exactly
    # 3 images (0.03 points) ahead. Today's `se > 0` gave p ~ 1e-9 or "no test" depending on the rounding.
    rng = random.Random(0)
    for _ in range(500):
        correct = [rng.randint(6000, 9500) for _ in range(rng.randint(2, 5))]
        method = [100.0 * _float32((c + 3) / 10_000) for c in correct]
        baseline = [100.0 * _float32(c / 10_000) for c in correct]
        result = paired_difference(method, baseline)
        assert result.p is None and result.se == 0.0
        assert result.low == result.high == result.diff == pytest.approx(0.03, abs=1e-4)
        welch = welch_difference([method[0]] * 3, [baseline[0]] * 3)
        assert welch.p is None and welch.low == welch.high
    # a real spread of one test image is far above the tolerance: it is tested
    assert paired_difference([80.03, 80.04, 80.03], [80.0, 80.0, 80.0]).p is not None


def test_holm_on_a_fixed_vector():
    # the family is all 5 planned comparisons, the untested one included (it can never be rejected):
    # sorted: 0.005*5 = 0.025, 0.01*4 = 0.04, 0.03*3 = 0.09, 0.04*2 = 0.08 -> kept monotone at 0.09
    assert holm([0.01, 0.04, 0.03, 0.005, None]) == pytest.approx([0.04, 0.09, 0.09, 0.025, None])
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])  # 4 planned, all tested
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1, then monotone
    assert holm([0.2]) == [0.2]
    assert holm([None, None]) == [None, None]


def test_holm_counts_untested_comparisons_in_the_family():
    # one tested comparison among three planned: Bonferroni over 3, not "1 tested, so no correction"
    assert holm([0.02, None, None]) == pytest.approx([0.06, None, None])


@pytest.mark.parametrize("bad", [math.nan, -0.1, 1.5, math.inf])
def test_holm_refuses_nan_and_impossible_p_values(bad):
    with pytest.raises(ValueError, match="p-value"):
        holm([0.01, bad, 0.2])


def test_the_tests_refuse_nan_loudly():
    with pytest.raises(ValueError, match="non-finite"):
        paired_difference([70.0, math.nan, 72.0], [69.0, 70.0, 71.0])
    with pytest.raises(ValueError, match="non-finite"):
        welch_difference([70.0, 71.0], [math.nan, 70.0])
    with pytest.raises(ValueError, match="non-finite"):
        mean_ci([70.0, math.nan])
    with pytest.raises(ValueError, match="non-finite"):
        two_level_ci({0: [70.0, math.nan], 1: [71.0]})


def test_flatten_and_replicate_keys():
    flat = flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": None, "f": {}})
    assert flat == {"a.b": "1", "a.c": "[1,2]", "d": "x", "e": "null", "f": "{}"}
    assert all(varies_by_design(k) for k in ("seed", "data.split_seed", "data.split_seed_from_seed",
                                              "data.fraction", "experiment"))
    assert not any(varies_by_design(k) for k in ("data.test_split_seed", "downstream.lr", "data.seed_offset"))


def test_relevant_keys_drop_other_methods_and_bookkeeping():
    config = {"seed": 3, "experiment": "x", "paths": {"cache": "/tmp/c"},
              "data": {"fraction": 0.5, "split_seed": 3, "name": "synthetic", "download": True},
              "trainer": {"enable_progress_bar": False, "threads": 2}, "downstream": {"lr": 0.1},
              "pretext": {"epochs": 2},
              "simclr": {"temperature": 0.5}, "rotation": {"jitter_strength": 0.5}, "pretext_data": {"target": {}}}
    assert set(relevant(config, "simclr")) == {"data.name", "downstream.lr", "pretext.epochs", "simclr.temperature",
                                               "pretext_data.target"}
    assert set(relevant(config, "rotation_jitter")) == {"data.name", "downstream.lr", "pretext.epochs",
                                                        "rotation.jitter_strength", "pretext_data.target"}
    assert set(relevant(config, "rotation")) == {"data.name", "downstream.lr", "pretext.epochs",
                                                 "pretext_data.target"}
    assert set(relevant(config, "supervised")) == {"data.name", "downstream.lr"}


def _run(folder: str, seed: int, acc: float, config: dict, experiment: str = "simclr") -> Run:
    return Run(results_path=Path("/sweep") / folder / "results.json", ok=True, experiment=experiment,
               data="synthetic", protocol="finetune", fraction=0.25, seed=seed, variant=(), test_loss=1.0,
               test_acc=acc, error=None, split_seed=seed, config=relevant(config, experiment))


def test_runs_that_differ_in_a_hyper_parameter_get_their_own_columns():
    runs = split_configurations([
        _run("a", 0, 0.70, {"downstream": {"lr": 0.05}, "seed": 0, "paths": {"cache": "/a"}}),
        _run("b", 1, 0.72, {"downstream": {"lr": 0.05}, "seed": 1, "paths": {"cache": "/b"}}),
        _run("c", 0, 0.50, {"downstream": {"lr": 0.01}, "seed": 0, "paths": {"cache": "/a"}}),
        _run("d", 0, 0.60, {"downstream": {"lr": 0.01}, "seed": 0}, experiment="supervised"),
    ])
    cells = {c.label: c for c in build_cells(runs)}
    assert set(cells) == {"SimCLR [downstream.lr=0.05]", "SimCLR [downstream.lr=0.01]", "Supervised"}
    assert cells["SimCLR [downstream.lr=0.05]"].acc_values == pytest.approx([70.0, 72.0])
    assert cells["SimCLR [downstream.lr=0.01]"].acc_values == pytest.approx([50.0])


def test_a_run_without_config_next_to_runs_with_one_gets_its_own_column():
    runs = split_configurations([_run("a", 0, 0.70, {"downstream": {"lr": 0.05}}),
                                 _run("b", 1, 0.72, {"downstream": {"lr": 0.05}}), _run("c", 2, 0.10, {})])
    assert sorted(c.label for c in build_cells(runs)) == ["SimCLR", "SimCLR [no config recorded]"]


def test_a_cell_that_would_mix_configurations_is_refused():
    mixed = [_run("a", 0, 0.70, {"downstream": {"lr": 0.05}}), _run("b", 1, 0.72, {"downstream": {"lr": 0.01}})]
    with pytest.raises(UserError, match="differ in downstream.lr"):
        build_cells(mixed)  # config variants not assigned: the guard must catch it


def _lr_runs(experiment: str, lrs: list[float]) -> list[Run]:
    return [_run(f"{experiment}{lr}_{seed}", seed, 0.5 + lr + 0.01 * seed, {"downstream": {"lr": lr}}, experiment)
            for lr in lrs for seed in (0, 1)]


def test_each_lr_column_is_compared_with_the_baseline_at_the_same_lr():
    cells = build_cells(split_configurations(_lr_runs("simclr", [0.01, 0.05]) + _lr_runs("supervised", [0.01, 0.05])))
    pairs = {c.method.label: c.baseline.label for c in build_comparisons(cells)}
    assert pairs == {"SimCLR [downstream.lr=0.01]": "Supervised [downstream.lr=0.01]",
                     "SimCLR [downstream.lr=0.05]": "Supervised [downstream.lr=0.05]"}
    assert ambiguous_baselines(cells) == []


def test_a_method_with_several_fitting_baselines_is_left_out_and_said_so():
    cells = build_cells(split_configurations(_lr_runs("simclr", [0.05]) + _lr_runs("supervised", [0.01, 0.05])))
    assert build_comparisons(cells) == []
    assert ambiguous_baselines(cells) == [
        "- synthetic, finetune, 25%, SimCLR: not compared; several baselines fit "
        "(Supervised [downstream.lr=0.01], Supervised [downstream.lr=0.05])"]


# ---- two levels: several label splits per pretext seed ----

def _split_run(seed: int, split: int, acc: float | None, experiment: str = "simclr", fraction: float = 0.05,
               **extra) -> Run:
    return Run(results_path=Path("/sweep") / f"{experiment}_{seed}_{split}_{fraction}" / "results.json",
               ok=acc is not None, experiment=experiment, data="synthetic", protocol="linear", fraction=fraction,
               seed=seed, variant=(), test_loss=None if acc is None else 1.0, test_acc=acc,
               error=None if acc is not None else "boom", split_seed=split, **extra)


# seed -> accuracies (0-1) of its label splits 0, 1, 2
TWO_LEVEL = {0: [0.70, 0.72, 0.74], 1: [0.75, 0.77, 0.76], 2: [0.68, 0.69, 0.73]}


def test_two_level_interval_matches_a_hand_computation():
    # per-seed means: 72, 76, 70 points; their mean 72.666..., s = sqrt(((-2/3)^2 + (10/3)^2 + (8/3)^2) / 2)
    means = [72.0, 76.0, 70.0]
    mean = 218 / 3
    s = math.sqrt(sum((m - mean) ** 2 for m in means) / 2)
    half = T95_DF2 * s / math.sqrt(3)
    estimate = two_level_ci({seed: [100 * a for a in accs] for seed, accs in TWO_LEVEL.items()})
    assert (estimate.n, estimate.mean, estimate.std) == (3, pytest.approx(mean), pytest.approx(s))
    assert (estimate.low, estimate.high) == (pytest.approx(mean - half, rel=1e-9), pytest.approx(mean + half, rel=1e-9))
    cells = build_cells([_split_run(seed, split, acc) for seed, accs in TWO_LEVEL.items()
                         for split, acc in enumerate(accs)])
    (cell,) = cells
    assert cell.n == 9 and cell.n_encoders == 3 and cell.splits_per_encoder == (3, 3)
    assert cell.acc_estimate.low == pytest.approx(mean - half, rel=1e-9)
    assert cell.design_text == "n=9: 3 seeds x 3 splits"
    # treating the 9 runs as independent would give a much narrower interval: the bug this guards against
    naive = mean_ci([100 * a for accs in TWO_LEVEL.values() for a in accs])
    assert naive.high - naive.low < 0.5 * (cell.acc_estimate.high - cell.acc_estimate.low)


def test_paired_two_level_comparison_by_seed_and_split_matches_a_hand_computation():
    baseline = {0: [0.66, 0.70, 0.71], 1: [0.70, 0.73, 0.75], 2: [0.67, 0.66, 0.70]}
    runs = [_split_run(seed, split, acc) for seed, accs in TWO_LEVEL.items() for split, acc in enumerate(accs)]
    runs += [_split_run(seed, split, acc, "supervised") for seed, accs in baseline.items()
             for split, acc in enumerate(accs)]
    (comparison,) = build_comparisons(build_cells(runs))
    per_seed = [statistics.fmean(100 * (a - b) for a, b in zip(TWO_LEVEL[s], baseline[s], strict=True))
                for s in range(3)]  # 3, 1.666..., 2.333...
    mean, se = statistics.fmean(per_seed), statistics.stdev(per_seed) / math.sqrt(3)
    result = comparison.result
    assert result.test == PAIRED and result.df == 2 and comparison.paired_seeds == 3
    assert result.diff == pytest.approx(mean) and result.se == pytest.approx(se)
    assert result.low == pytest.approx(mean - T95_DF2 * se) and result.p == pytest.approx(p_df2(mean / se))
    assert comparison.left_out == ()


def test_sides_that_share_seeds_but_not_split_seeds_are_paired_by_seed_after_averaging():
    runs = [_split_run(seed, split, acc) for seed, accs in TWO_LEVEL.items() for split, acc in enumerate(accs)]
    runs += [_split_run(seed, 10 + seed, 0.70 + 0.01 * seed, "supervised") for seed in range(3)]
    (comparison,) = build_comparisons(build_cells(runs))
    per_seed = [statistics.fmean(100 * a for a in TWO_LEVEL[s]) - 100 * (0.70 + 0.01 * s) for s in range(3)]
    assert comparison.result.test == PAIRED_BY_SEED and comparison.result.df == 2
    assert comparison.result.diff == pytest.approx(statistics.fmean(per_seed))


def test_a_failed_run_does_not_turn_the_comparison_into_welch():
    # baseline seed 2 failed: the two shared (seed, split seed) pairs are still paired; the method's seed 2 is named
    runs = [_split_run(s, s, a) for s, a in enumerate([0.80, 0.83, 0.79])]
    runs += [_split_run(s, s, a, "supervised") for s, a in enumerate([0.75, 0.79, None])]
    (comparison,) = build_comparisons(build_cells(runs))
    assert comparison.result.test == PAIRED and comparison.result.df == 1
    assert comparison.result.diff == pytest.approx(4.5)
    assert comparison.left_out == ("method seed 2 split 2",)
    assert "unpaired, left out of the test: method seed 2 split 2" in comparison.note


def test_untested_comparisons_stay_in_the_holm_family_and_are_named():
    runs = [_split_run(s, s, a) for s, a in enumerate([0.80, 0.83, 0.79])]
    runs += [_split_run(s, s, a, "supervised") for s, a in enumerate([0.75, 0.79, 0.76])]
    runs += [_split_run(0, 0, 0.81, "rotation")]  # one run: no test, but planned
    comparisons = {c.method.label: c for c in build_comparisons(build_cells(runs))}
    tested, untested = comparisons["SimCLR"], comparisons["Rotation"]
    assert untested.result is None and untested.holm_p is None and untested.family == 2
    assert tested.holm_p == pytest.approx(min(1.0, 2 * tested.result.p))
    text = render_comparisons(list(comparisons.values()))
    assert "Holm p corrects over the 2 planned comparison(s) of this table, 1 of them tested" in text
    assert "- 5%, Rotation: no test: n < 2 (n=1 vs 3 seeds)" in text


def test_detectable_difference_against_the_normal_approximation_and_the_t_quantiles():
    # with many degrees of freedom the noncentral t is a shifted normal: delta = (z_{1-a/2} + z_{power}) * se
    z = statistics.NormalDist()
    for alpha in (0.05, 0.05 / 9):
        expected = (z.inv_cdf(1 - alpha / 2) + z.inv_cdf(0.8)) * 1.5
        assert detectable_difference(1.5, 1e7, alpha) == pytest.approx(expected, rel=1e-4)
    small = detectable_difference(1.0, 2, 0.05)
    assert small > T95_DF2  # with 2 df it must exceed the critical value itself
    assert detectable_difference(1.0, 2, 0.05 / 9) > small
    assert detectable_difference(0.0, 2, 0.05) is None


def test_budgets_by_count_and_by_fraction_get_their_own_rows():
    runs = [_split_run(s, s, 0.6 + 0.01 * s, labels_per_class=10, fraction=None) for s in range(2)]
    runs += [_split_run(s, s, 0.7 + 0.01 * s) for s in range(2)]
    cells = build_cells(runs)
    assert [c.budget.text for c in cells] == ["10/class", "5%"]
    assert cells[0].fraction is None and cells[0].budget.labels_per_class == 10
    assert cells[1].budget.file_part == "5pct" and cells[0].budget.file_part == "10perclass"


def test_the_chosen_metric_drives_cells_and_comparisons():
    runs = [_split_run(s, s, 0.80, metrics={"test_balanced_acc": 0.60 + 0.02 * s}) for s in range(3)]
    runs += [_split_run(s, s, 0.70, "supervised", metrics={"test_balanced_acc": 0.50 + 0.01 * s}) for s in range(3)]
    (comparison,) = build_comparisons(build_cells(runs, "test_balanced_acc"))
    assert comparison.method.estimate.mean == pytest.approx(62.0)
    assert comparison.result.diff == pytest.approx(11.0)


STUDY = Path(__file__).resolve().parent.parent / "docs" / "study"


@pytest.mark.parametrize("runs_file, comparisons_file", [
    ("results_runs.csv", "comparisons.csv"), ("probe_results_runs.csv", "probe_comparisons.csv"),
    ("methods_5pct_results_runs.csv", "methods_5pct_comparisons.csv")])
def test_the_stored_study_re_reports_to_its_published_comparisons(runs_file, comparisons_file):
    """docs/RESULTS.md quotes these numbers: the report code must still produce them from the per-run CSV."""
    import csv

    from ssl_lightning.report.comparisons import csv_row
    from ssl_lightning.report.csvfile import read_runs_csv

    comparisons = build_comparisons(build_cells(read_runs_csv(STUDY / runs_file).runs))
    with (STUDY / comparisons_file).open(newline="") as stream:
        published = {(r["protocol"], r["label"], r["fraction"]): r for r in csv.DictReader(stream)}
    rows = {(r["protocol"], r["label"], r["fraction"]): r for r in map(csv_row, comparisons)}
    assert set(rows) == set(published)
    for key, row in rows.items():
        for column in ("diff_points", "diff_ci_low", "diff_ci_high", "p_value", "holm_p_value",
                       "detectable_diff_points", "detectable_diff_points_holm"):
            assert float(row[column]) == pytest.approx(float(published[key][column]), rel=1e-9), (key, column)
        assert row["test"] == published[key]["test"] == PAIRED and row["holm_family"] == int(
            published[key]["holm_family"])
