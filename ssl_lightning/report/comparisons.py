"""Each method against the supervised baseline at the same data, fraction and protocol: comparisons.csv + markdown.

The difference is in test-accuracy points (method minus baseline) with its 95% CI. The test is the paired t-test
when both sides hold exactly the same (seed, split seed) replicates, once each; Welch's t-test otherwise. p-values
are Holm-corrected across the comparisons of one table (one data set and protocol).
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

from ssl_lightning.report.aggregate import SUPERVISED, Cell, by_group, fraction_text
from ssl_lightning.report.columns import display
from ssl_lightning.report.statistics import Difference, holm, paired_difference, welch_difference

ALPHA = 0.05
MARK = "*"
FIELDS = ("data", "protocol", "fraction", "method", "label", "baseline", "n_method", "n_baseline",
          "method_acc_mean", "baseline_acc_mean", "diff_points", "diff_ci_low", "diff_ci_high", "test", "df",
          "p_value", "holm_p_value", "significant", "note", "config_differences")


@dataclass(frozen=True)
class Comparison:
    method: Cell
    baseline: Cell
    result: Difference | None
    note: str
    holm_p: float | None = None

    @property
    def diff(self) -> float | None:
        """Difference of the mean accuracies in points; present as soon as both sides have a run."""
        if self.result is not None:
            return self.result.diff
        if self.method.n and self.baseline.n:
            return statistics.fmean(self.method.acc_values) - statistics.fmean(self.baseline.acc_values)
        return None

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


def _paired_values(method: Cell, baseline: Cell) -> tuple[list[float], list[float]] | None:
    """Accuracies aligned by (seed, split seed) when both sides hold the same replicates exactly once; else None."""
    def by_replicate(cell: Cell) -> dict[tuple, float] | None:
        runs = cell.ok_runs
        keys = [r.replicate for r in runs]
        if any(seed is None for seed, _ in keys) or len(set(keys)) != len(keys):
            return None
        return {r.replicate: 100.0 * r.test_acc for r in runs if r.test_acc is not None}

    a, b = by_replicate(method), by_replicate(baseline)
    if a is None or b is None or set(a) != set(b):
        return None
    order = sorted(a, key=lambda k: (k[0], k[1] if k[1] is not None else -1))
    return [a[k] for k in order], [b[k] for k in order]


def compare(method: Cell, baseline: Cell) -> Comparison:
    """One comparison; no test (a note says why) when either side has fewer than 2 successful runs."""
    if method.n < 2 or baseline.n < 2:
        return Comparison(method, baseline, None, f"no test: n < 2 (n={method.n} vs {baseline.n})")
    paired = _paired_values(method, baseline)
    result = paired_difference(*paired) if paired else welch_difference(method.acc_values, baseline.acc_values)
    note = "" if result.p is not None else "no p-value: the differences have zero variance"
    return Comparison(method, baseline, result, note)


def _baseline(method: Cell, candidates: list[Cell]) -> Cell | None:
    """The supervised column at the method's fraction: the only one, else the one with the method's config keys,
    else the default one; None when several fit equally."""
    if len(candidates) == 1:
        return candidates[0]
    for chosen in ([c for c in candidates if c.runs and c.runs[0].config_variant == method.runs[0].config_variant
                    and not c.runs[0].variant],
                   [c for c in candidates if c.runs and not c.runs[0].config_variant and not c.runs[0].variant]):
        if len(chosen) == 1:
            return chosen[0]
    return None


def ambiguous_baselines(cells: list[Cell]) -> list[str]:
    """Method cells left out because several supervised columns at their fraction fit equally, one line each."""
    lines = []
    for group in by_group(cells).values():
        for cell in group:
            candidates = [c for c in group if c.experiment == SUPERVISED and c.fraction == cell.fraction]
            if cell.experiment != SUPERVISED and cell.runs and candidates and _baseline(cell, candidates) is None:
                lines.append(f"- {cell.data}, {cell.protocol}, {fraction_text(cell.fraction)}, {cell.label}: not "
                             f"compared; several baselines fit ({', '.join(c.label for c in candidates)})")
    return lines


def build_comparisons(cells: list[Cell]) -> list[Comparison]:
    """Every non-supervised cell that has a supervised cell at its data, protocol and fraction; Holm per table."""
    comparisons: list[Comparison] = []
    for group in by_group(cells).values():
        table: list[Comparison] = []
        for cell in group:
            if cell.experiment == SUPERVISED or not cell.runs:
                continue
            candidates = [c for c in group if c.experiment == SUPERVISED and c.fraction == cell.fraction]
            baseline = _baseline(cell, candidates)
            if baseline is not None:
                table.append(compare(cell, baseline))
        adjusted = holm([c.result.p if c.result else None for c in table])
        comparisons += [replace(c, holm_p=p) for c, p in zip(table, adjusted, strict=True)]
    return comparisons


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def csv_row(comparison: Comparison) -> dict[str, str | int]:
    method, baseline, result = comparison.method, comparison.baseline, comparison.result
    return {
        "data": method.data, "protocol": method.protocol, "fraction": repr(method.fraction),
        "method": method.experiment, "label": method.label, "baseline": baseline.label,
        "n_method": method.n, "n_baseline": baseline.n,
        "method_acc_mean": _number(statistics.fmean(method.acc_values) if method.n else None),
        "baseline_acc_mean": _number(statistics.fmean(baseline.acc_values) if baseline.n else None),
        "diff_points": _number(comparison.diff), "diff_ci_low": _number(result.low if result else None),
        "diff_ci_high": _number(result.high if result else None), "test": result.test if result else "",
        "df": _number(result.df if result else None), "p_value": _number(result.p if result else None),
        "holm_p_value": _number(comparison.holm_p),
        "significant": "" if comparison.holm_p is None else ("yes" if comparison.significant else "no"),
        "note": comparison.note, "config_differences": "; ".join(comparison.config_differences),
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


def _row(comparison: Comparison) -> list[str]:
    result, diff = comparison.result, comparison.diff
    diff_text = "" if diff is None else f"{diff:+.2f}{MARK if comparison.significant else ''}"
    interval = "" if result is None or result.low is None else f"[{result.low:+.2f}, {result.high:+.2f}]"
    return [fraction_text(comparison.method.fraction), comparison.method.label, comparison.baseline.label,
            diff_text, interval, result.test if result else comparison.note, _p_text(result.p if result else None),
            _p_text(comparison.holm_p), f"{comparison.method.n} / {comparison.baseline.n}"]


HEADER = ["fraction", "method", "baseline", "difference (points)", "95% CI", "test", "p", "Holm p", "n"]


def _pipe_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *rows]) for i in range(len(HEADER))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)) + " |"

    return "\n".join([line(HEADER), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)])


def render_comparisons(comparisons: list[Comparison], ambiguous: list[str] | None = None) -> str:
    """One '## <data> — <protocol>: against the baseline' section per table, with how to read it."""
    parts: list[str] = []
    groups: dict[tuple[str, str], list[Comparison]] = {}
    for comparison in comparisons:
        groups.setdefault((comparison.method.data, comparison.method.protocol), []).append(comparison)
    for (data, protocol), group in groups.items():
        name = display(SUPERVISED, protocol)
        tested = sum(c.result is not None and c.result.p is not None for c in group)
        parts += [
            f"## {data} — {protocol}: each method against {name}", "",
            f"Difference = the method's mean test accuracy minus {name}'s at the same fraction, in percentage "
            "points, with its 95% confidence interval. Test: paired t-test over runs that share (seed, split seed) "
            "when both sides hold exactly the same pairs, Welch's t-test otherwise. Holm p corrects the p-values "
            f"for the {tested} tested comparison(s) of this table; {MARK} marks Holm p < {ALPHA}. No test (blank p) "
            "when a side has fewer than 2 successful runs. Every number: `comparisons.csv`.", "",
            _pipe_table([_row(c) for c in group]), "",
        ]
        confounded = [f"- {fraction_text(c.method.fraction)}, {c.method.label}: {', '.join(c.config_differences)}"
                      for c in group if c.config_differences]
        if confounded:
            parts += [f"These comparisons also differ from {name} in configuration (method vs baseline):", "",
                      *confounded, ""]
    if ambiguous:
        parts += ["## Comparisons left out", "", *ambiguous, ""]
    return "\n".join(parts)
