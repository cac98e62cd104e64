"""The verdict paragraph that ends each table: one sentence per comparison, written from its verdict word
(verdict.py), its interval and its probability of improvement (improvement.py) - and nothing else, so that prose
quoting it (docs/RESULTS.md) has no claim the statistics do not make."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ssl_lightning.report.verdict import AHEAD, BEHIND, EQUIVALENT

if TYPE_CHECKING:
    from ssl_lightning.report.comparisons import Comparison


def margin_text(margin: float) -> str:
    """'±1 point', '±0.5 points'."""
    return f"±{margin:g} point{'' if margin == 1 else 's'}"


def _improvement_text(comparison: Comparison) -> str:
    found = comparison.improvement
    if found is None:
        return ""
    interval = "" if found.low is None else f" [{found.low:.2f}, {found.high:.2f}]"
    return f"; P(improvement) {found.p:.2f}{interval}"


def sentence(comparison: Comparison) -> str:
    """'SimCLR vs Raw pixels (linear, 5/class): behind by 1.10 points [-1.80, -0.40]; P(improvement) 0.31
    [0.18, 0.45].'"""
    c, result = comparison, comparison.result
    where = f"{c.method.label} vs {c.baseline.label} ({c.method.protocol}, {c.method.budget.text})"
    word = c.verdict
    if word in (AHEAD, BEHIND):
        text = f"{word} by {abs(result.diff):.2f} points [{result.low:+.2f}, {result.high:+.2f}]"
    elif word == EQUIVALENT:
        tost = c.equivalence
        text = f"equivalent within {margin_text(c.margin)} (90% interval [{tost.low:+.2f}, {tost.high:+.2f}])"
    elif result is None or result.p is None or result.low is None:
        text = f"inconclusive ({c.note.split('; ')[0]})" if c.note else "inconclusive (not tested)"
    else:
        holm = "" if result.low <= 0 <= result.high else f", not significant after Holm (p {c.holm_p:.3f})"
        text = f"inconclusive: {result.diff:+.2f} points [{result.low:+.2f}, {result.high:+.2f}]{holm}"
    return f"{where}: {text}{_improvement_text(c)}."


def verdict_paragraph(comparisons: Sequence[Comparison]) -> str:
    """'Verdicts (...): <sentence> <sentence> ...'; '' without comparisons."""
    if not comparisons:
        return ""
    first = comparisons[0]
    rules = (f"ahead/behind: the 95% interval excludes 0 after Holm; equivalent: two one-sided tests at "
             f"α={first.alpha:g}, the 90% interval within {margin_text(first.margin)}; else inconclusive; "
             "P(improvement): the chance that a run of the method on a new encoder and split beats one of the "
             "baseline, with its 95% bootstrap interval over seeds and splits")
    return f"Verdicts ({rules}): " + " ".join(sentence(c) for c in comparisons)
