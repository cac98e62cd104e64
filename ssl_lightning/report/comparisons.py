"""Each method against the supervised baseline at the same data, label budget and protocol, and in frozen-feature
tables against the raw-pixel floor as well: comparisons.csv and markdown.

The difference is in points of the chosen metric (method minus baseline) with its 95% CI. Seeds (encoders) are
the independent units; label splits of one seed are averaged first (aggregate.py). The test, in this order:
- **paired t** on the (seed, split seed) replicates both sides hold: their differences are averaged per seed and
  the t-test runs over those seeds (df = seeds - 1); runs without a partner (a failed run on the other side) are
  left out and named. Needs shared replicates on at least 2 seeds.
- **paired t (by seed)**: when the sides share seeds but not split seeds (e.g. one side drew its labels with a
  fixed split seed), each side's splits are averaged per seed and the seeds are paired.
- **Welch t** on the seeds' means when fewer than 2 seeds are shared.
Holm's correction runs over every planned comparison of one table (one data set and protocol), those against the
raw-pixel floor included: a comparison that cannot be tested still counts in the family (as a p-value of 1 would)
and is named under the table. The floor comparisons (every column but the baseline and the floor itself, the
supervised-features ceiling included) exist where the table has a "Raw pixels" column at the method's budget.
Each comparison also gets a verdict word (verdict.py: ahead, behind, equivalent within `--margin`, inconclusive)
and a probability of improvement with its bootstrap interval (improvement.py); each section ends with the verdict
paragraph (paragraph.py).
"""

from __future__ import annotations

import csv
import statistics
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path

from ssl_lightning.methods.registry import SUPERVISED
from ssl_lightning.report.aggregate import Cell, by_group, per_seed
from ssl_lightning.report.collect import Run
from ssl_lightning.report.columns import FLOOR, display
from ssl_lightning.report.improvement import Improvement, improvement
from ssl_lightning.report.metric_choice import words_for_key
from ssl_lightning.report.paragraph import margin_text, verdict_paragraph
from ssl_lightning.report.statistics import (
    PAIRED,
    PAIRED_BY_SEED,
    POWER,
    Difference,
    detectable_difference,
    group_means,
    holm,
    paired_difference,
    welch_difference,
)
from ssl_lightning.report.verdict import DEFAULT_MARGIN, Equivalence, equivalence, verdict

ALPHA = 0.05
MARK = "*"
FIELDS = ("data", "protocol", "fraction", "method", "label", "baseline", "n_method", "n_baseline",
          "method_acc_mean", "baseline_acc_mean", "diff_points", "diff_ci_low", "diff_ci_high", "test", "df",
          "p_value", "holm_p_value", "significant", "note", "config_differences",
          "metric", "labels_per_class", "method_mean", "baseline_mean", "seeds_method", "seeds_baseline",
          "paired_seeds", "left_out", "holm_family", "se", "detectable_diff_points", "detectable_diff_points_holm",
          "verdict", "margin", "equivalence_ci_low", "equivalence_ci_high", "tost_p_value", "p_improvement",
          "p_improvement_ci_low", "p_improvement_ci_high")


@dataclass(frozen=True)
class Pairing:
    """What the test runs on: per-seed values of each side (paired: equally long, aligned), the test's name and
    the runs or seeds that had no partner."""

    test: str
    method: list[float]
    baseline: list[float]
    left_out: tuple[str, ...] = ()


@dataclass(frozen=True)
class Comparison:
    method: Cell
    baseline: Cell
    result: Difference | None
    note: str
    holm_p: float | None = None
    family: int = 0  # planned comparisons in this comparison's Holm family (its table)
    left_out: tuple[str, ...] = ()
    paired_seeds: int = 0
    margin: float = DEFAULT_MARGIN  # points: the equivalence margin of the verdict
    improvement: Improvement | None = None
    alpha: float = ALPHA

    @property
    def equivalence(self) -> Equivalence | None:
        """TOST against ±margin: the 90% interval and its p-value (None without a test)."""
        return equivalence(self.result, self.margin, self.alpha)

    @property
    def verdict(self) -> str:
        """ahead | behind | equivalent | inconclusive (verdict.py)."""
        return verdict(self.result, self.holm_p, self.margin, self.alpha)

    @property
    def diff(self) -> float | None:
        """Difference in points; without a test, the difference of the two-level means when both sides have one."""
        if self.result is not None:
            return self.result.diff
        a, b = self.method.estimate.mean, self.baseline.estimate.mean
        return None if a is None or b is None else a - b

    @property
    def config_differences(self) -> list[str]:
        """Shared config keys whose values differ between the two sides ('key=method vs baseline'): a comparison
        that is confounded by more than the method. Keys only one side reads (pretext, method sections) are out."""
        if not self.method.runs or not self.baseline.runs:
            return []
        a, b = self.method.runs[0].config, self.baseline.runs[0].config
        return [f"{k}={a[k]} vs {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]

    @property
    def significant(self) -> bool:
        return self.holm_p is not None and self.holm_p < ALPHA

    def detectable(self, alpha: float) -> float | None:
        """Smallest true difference (points) this design detects with 80% power at alpha (from the observed spread)."""
        if self.result is None or self.result.p is None:
            return None
        return detectable_difference(self.result.se, self.result.df, alpha, POWER)

    @property
    def holm_alpha(self) -> float:
        """Holm's strictest step, alpha / m (= Bonferroni): what the first-ranked comparison must pass."""
        return ALPHA / max(self.family, 1)

    @property
    def rules_out(self) -> str:
        """What the 95% interval excludes, in words: '< -0.39 or > +1.06 points'."""
        if self.result is None or self.result.low is None or self.result.high is None:
            return ""
        return f"< {self.result.low:+.2f} or > {self.result.high:+.2f} points"


def _replicate_values(cell: Cell, metric_key: str) -> dict[tuple, float] | None:
    """(seed, split seed) -> value (percent); None when a seed is missing or a replicate repeats (cannot pair)."""
    runs = [r for r in cell.ok_runs if r.value(metric_key) is not None]
    keys = [r.replicate for r in runs]
    if any(seed is None for seed, _ in keys) or len(set(keys)) != len(keys):
        return None
    return {r.replicate: 100.0 * r.value(metric_key) for r in runs}


def _replicate_text(key: tuple) -> str:
    return f"seed {key[0]} split {key[1]}"


def _by_replicate(a: dict[tuple, float], b: dict[tuple, float]) -> Pairing | None:
    """Pairs on the shared (seed, split seed) replicates, averaged per seed; None below 2 seeds with a shared one."""
    shared = set(a) & set(b)
    seeds = sorted({seed for seed, _ in shared})
    if len(seeds) < 2:
        return None
    method, baseline = [], []
    for seed in seeds:
        keys = [k for k in shared if k[0] == seed]
        method.append(statistics.fmean(a[k] for k in keys))
        baseline.append(statistics.fmean(b[k] for k in keys))
    order = lambda k: (k[0], -1 if k[1] is None else k[1])  # noqa: E731
    left = [f"method {_replicate_text(k)}" for k in sorted(set(a) - shared, key=order)]
    left += [f"baseline {_replicate_text(k)}" for k in sorted(set(b) - shared, key=order)]
    return Pairing(PAIRED, method, baseline, tuple(left))


def _by_seed(a: dict[Hashable, list[float]], b: dict[Hashable, list[float]]) -> Pairing | None:
    """Each side's splits averaged per seed, then paired by seed; None below 2 shared seeds."""
    shared = sorted(k for k in set(a) & set(b) if isinstance(k, int))
    if len(shared) < 2:
        return None
    left = [f"method seed {k}" for k in sorted(set(a) - set(shared), key=str)]
    left += [f"baseline seed {k}" for k in sorted(set(b) - set(shared), key=str)]
    return Pairing(PAIRED_BY_SEED, [statistics.fmean(a[k]) for k in shared], [statistics.fmean(b[k]) for k in shared],
                   tuple(left))


def pairing(method: Cell, baseline: Cell, metric_key: str) -> Pairing | None:
    """The paired design when the sides share replicates or seeds; None means Welch on the seeds' means."""
    a, b = _replicate_values(method, metric_key), _replicate_values(baseline, metric_key)
    paired = _by_replicate(a, b) if a is not None and b is not None else None
    if paired is None:
        def value(run: Run) -> float | None:
            return None if run.value(metric_key) is None else 100.0 * run.value(metric_key)

        paired = _by_seed(per_seed(method.ok_runs, value), per_seed(baseline.ok_runs, value))
    return paired


def _zero_spread_note(result: Difference) -> str:
    return (f"no p-value: every difference equals {result.diff:+.4f} points (zero spread up to float rounding); "
            "a t statistic is undefined")


def compare(method: Cell, baseline: Cell, margin: float = DEFAULT_MARGIN) -> Comparison:
    """One comparison; no test (a note says why) when either side has fewer than 2 seeds with a successful run."""
    metric_key = method.metric_key
    seeds_a, seeds_b = method.seed_groups(), baseline.seed_groups()
    better = improvement(seeds_a, seeds_b)
    if len(seeds_a) < 2 or len(seeds_b) < 2:
        return Comparison(method, baseline, None, f"no test: n < 2 (n={len(seeds_a)} vs {len(seeds_b)} seeds)",
                          margin=margin, improvement=better)
    paired = pairing(method, baseline, metric_key)
    if paired is not None:
        result = paired_difference(paired.method, paired.baseline, test=paired.test)
        left_out, units = paired.left_out, len(paired.method)
    else:
        result = welch_difference(group_means(seeds_a), group_means(seeds_b))
        left_out, units = (), 0
    note = "" if result.p is not None else _zero_spread_note(result)
    if left_out:
        note = "; ".join(filter(None, [note, f"unpaired, left out of the test: {', '.join(left_out)}"]))
    return Comparison(method, baseline, result, note, left_out=left_out, paired_seeds=units, margin=margin,
                      improvement=better)


def _baseline(method: Cell, candidates: list[Cell]) -> Cell | None:
    """The baseline column (supervised, or raw pixels) at the method's budget: the only one, else the one with the
    method's config keys, else the default one; None when several fit equally."""
    if len(candidates) == 1:
        return candidates[0]
    for chosen in ([c for c in candidates if c.runs and c.runs[0].config_variant == method.runs[0].config_variant
                    and not c.runs[0].variant],
                   [c for c in candidates if c.runs and not c.runs[0].config_variant and not c.runs[0].variant]):
        if len(chosen) == 1:
            return chosen[0]
    return None


BASELINES = (SUPERVISED, FLOOR)  # what each method is compared with: the supervised column, then raw pixels


def _compared(cell: Cell, baseline: str) -> bool:
    """Whether `cell` is compared with the `baseline` experiment's column: every other column is compared with the
    supervised one; every column but those two with the floor."""
    if not cell.runs or cell.experiment == baseline:
        return False
    return baseline == SUPERVISED or cell.experiment != SUPERVISED


def ambiguous_baselines(cells: list[Cell]) -> list[str]:
    """Method cells left out because several baseline columns at their budget fit equally, one line each."""
    lines = []
    for group in by_group(cells).values():
        for baseline in BASELINES:
            for cell in group:
                candidates = [c for c in group if c.experiment == baseline and c.budget == cell.budget]
                if _compared(cell, baseline) and candidates and _baseline(cell, candidates) is None:
                    lines.append(f"- {cell.data}, {cell.protocol}, {cell.budget.text}, {cell.label}: not "
                                 f"compared; several baselines fit ({', '.join(c.label for c in candidates)})")
    return lines


def build_comparisons(cells: list[Cell], margin: float = DEFAULT_MARGIN) -> list[Comparison]:
    """Every non-supervised cell that has a supervised cell at its data, protocol and budget, then every cell but
    the supervised one that has a raw-pixel cell there; Holm per table over every one of them (tested or not)."""
    comparisons: list[Comparison] = []
    for group in by_group(cells).values():
        table: list[Comparison] = []
        for baseline_experiment in BASELINES:
            for cell in group:
                if not _compared(cell, baseline_experiment):
                    continue
                candidates = [c for c in group if c.experiment == baseline_experiment and c.budget == cell.budget]
                baseline = _baseline(cell, candidates)
                if baseline is not None:
                    table.append(compare(cell, baseline, margin))
        adjusted = holm([c.result.p if c.result else None for c in table])
        comparisons += [replace(c, holm_p=p, family=len(table)) for c, p in zip(table, adjusted, strict=True)]
    return comparisons


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def _acc_mean(cell: Cell) -> float | None:
    return cell.acc_estimate.mean


def csv_row(comparison: Comparison) -> dict[str, str | int]:
    method, baseline, result = comparison.method, comparison.baseline, comparison.result
    tost, better = comparison.equivalence, comparison.improvement
    return {
        "data": method.data, "protocol": method.protocol, "fraction": _number(method.fraction),
        "method": method.experiment, "label": method.label, "baseline": baseline.label,
        "n_method": method.n, "n_baseline": baseline.n,
        "method_acc_mean": _number(_acc_mean(method)), "baseline_acc_mean": _number(_acc_mean(baseline)),
        "diff_points": _number(comparison.diff), "diff_ci_low": _number(result.low if result else None),
        "diff_ci_high": _number(result.high if result else None), "test": result.test if result else "",
        "df": _number(result.df if result else None), "p_value": _number(result.p if result else None),
        "holm_p_value": _number(comparison.holm_p),
        "significant": "" if comparison.holm_p is None else ("yes" if comparison.significant else "no"),
        "note": comparison.note, "config_differences": "; ".join(comparison.config_differences),
        "metric": method.metric_key, "labels_per_class": _number(method.budget.labels_per_class),
        "method_mean": _number(method.estimate.mean), "baseline_mean": _number(baseline.estimate.mean),
        "seeds_method": method.n_encoders, "seeds_baseline": baseline.n_encoders,
        "paired_seeds": comparison.paired_seeds, "left_out": "; ".join(comparison.left_out),
        "holm_family": comparison.family, "se": _number(result.se if result and result.p is not None else None),
        "detectable_diff_points": _number(comparison.detectable(ALPHA)),
        "detectable_diff_points_holm": _number(comparison.detectable(comparison.holm_alpha)),
        "verdict": comparison.verdict, "margin": _number(comparison.margin),
        "equivalence_ci_low": _number(tost.low if tost else None),
        "equivalence_ci_high": _number(tost.high if tost else None), "tost_p_value": _number(tost.p if tost else None),
        "p_improvement": _number(better.p if better else None),
        "p_improvement_ci_low": _number(better.low if better else None),
        "p_improvement_ci_high": _number(better.high if better else None),
    }


def write_comparisons_csv(comparisons: list[Comparison], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(c) for c in comparisons)


def _p_text(p: float | None) -> str:
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _size(cell: Cell) -> str:
    """'3' (seeds, one split each) or '3x10' (seeds x splits per seed)."""
    low, high = cell.splits_per_encoder
    if high <= 1:
        return str(cell.n)
    return f"{cell.n_encoders}x{low if low == high else f'{low}-{high}'}"


def _detectable_text(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _row(comparison: Comparison) -> list[str]:
    result, diff = comparison.result, comparison.diff
    diff_text = "" if diff is None else f"{diff:+.2f}{MARK if comparison.significant else ''}"
    interval = "" if result is None or result.low is None else f"[{result.low:+.2f}, {result.high:+.2f}]"
    return [comparison.method.budget.text, comparison.method.label, comparison.baseline.label,
            diff_text, interval, result.test if result else comparison.note, _p_text(result.p if result else None),
            _p_text(comparison.holm_p), f"{_size(comparison.method)} / {_size(comparison.baseline)}",
            _detectable_text(comparison.detectable(ALPHA)),
            _detectable_text(comparison.detectable(comparison.holm_alpha)), comparison.verdict,
            _improvement_cell(comparison.improvement)]


def _improvement_cell(found: Improvement | None) -> str:
    if found is None:
        return ""
    return f"{found.p:.2f}" + ("" if found.low is None else f" [{found.low:.2f}, {found.high:.2f}]")


def _header(family: int, margin: float) -> list[str]:
    return ["labels", "method", "baseline", "difference (points)", "95% CI", "test", "p", "Holm p",
            "n (seeds[xsplits])", f"detectable at α={ALPHA:g}", f"detectable at α={ALPHA:g}/{family}",
            f"verdict (margin {margin_text(margin)})", "P(improvement) [95%]"]


def _pipe_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)])


def _reading(comparisons: list[Comparison]) -> list[str]:
    """One sentence per comparison that says what its interval rules out, instead of 'no difference'."""
    lines = []
    for c in comparisons:
        where = f"- {c.method.budget.text}, {c.method.label}:"
        if c.result is None or c.result.low is None or c.result.high is None:
            lines.append(f"{where} not tested ({c.note})")
        elif c.result.p is None:
            lines.append(f"{where} zero spread: the difference is exactly {c.result.diff:+.2f} points in every "
                         "replicate; no interval or p-value")
        else:
            lines.append(f"{where} the difference lies in [{c.result.low:+.2f}, {c.result.high:+.2f}] points "
                         f"(95%, not corrected); it rules out differences {c.rules_out}")
    return lines


def render_comparisons(comparisons: list[Comparison], ambiguous: list[str] | None = None) -> str:
    """One '## <data> — <protocol>: against the baseline' section per table, with how to read it."""
    parts: list[str] = []
    groups: dict[tuple[str, str, str], list[Comparison]] = {}
    tested: dict[tuple[str, str], int] = {}  # per table: the Holm family spans both baselines' sections
    for comparison in comparisons:
        table = (comparison.method.data, comparison.method.protocol)
        groups.setdefault((*table, comparison.baseline.experiment), []).append(comparison)
        tested[table] = tested.get(table, 0) + int(comparison.result is not None and comparison.result.p is not None)
    for (data, protocol, baseline), group in groups.items():
        name = display(baseline, protocol)
        metric = words_for_key(group[0].method.metric_key)
        family = group[0].family
        untested = [c for c in group if c.result is None or c.result.p is None]
        parts += [
            f"## {data} — {protocol}: each method against {name} ({metric}), margin {margin_text(group[0].margin)}",
            "",
            f"Metric: {metric} (`{group[0].method.metric_key}`). Difference = the method's mean minus {name}'s at "
            "the same label budget, in percentage points, with its 95% confidence interval (not corrected). Seeds "
            "are the independent units: the label splits of one seed are averaged first. Test: paired t over the "
            "seeds whose (seed, split seed) replicates both sides hold (runs without a partner are left out and "
            "named), paired by seed when the split seeds differ, Welch's t on the seeds' means when fewer than 2 "
            f"seeds are shared. Holm p corrects over the {family} planned comparison(s) of this table, "
            f"{tested[(data, protocol)]} of them tested; {MARK} marks Holm p < {ALPHA}. \"detectable\" = the "
            f"smallest true difference this design would detect with {POWER:.0%} power (paired or Welch t with the "
            f"observed spread), at the plain α and at Holm's strictest step α/{family}. No asterisk is not evidence "
            "of no difference: read the interval, which says which differences the data rule out. Verdict: "
            "ahead/behind when the 95% interval excludes 0 and Holm p < "
            f"{ALPHA:g}; equivalent when two one-sided tests at α={ALPHA:g} place the difference within the margin "
            f"{margin_text(group[0].margin)} (its 90% interval lies inside it); inconclusive otherwise, untested "
            "comparisons included. P(improvement): the chance that a run of the method (a new encoder and split) "
            "scores above a run of the baseline, ties half, over every pair of runs, with a 95% bootstrap interval "
            "over seeds and the splits within them. Every number: `comparisons.csv`.", "",
            _pipe_table(_header(family, group[0].margin), [_row(c) for c in group]), "",
            "What each interval rules out:", "", *_reading(group), "",
        ]
        if untested:
            parts += [f"Planned but not tested (counted in the Holm family of {family}, never significant):", "",
                      *(f"- {c.method.budget.text}, {c.method.label}: {c.note}" for c in untested), ""]
        confounded = [f"- {c.method.budget.text}, {c.method.label}: {', '.join(c.config_differences)}"
                      for c in group if c.config_differences]
        if confounded:
            parts += [f"These comparisons also differ from {name} in configuration (method vs baseline):", "",
                      *confounded, ""]
        parts += [verdict_paragraph(group), ""]
    if ambiguous:
        parts += ["## Comparisons left out", "", *ambiguous, ""]
    return "\n".join(parts)

