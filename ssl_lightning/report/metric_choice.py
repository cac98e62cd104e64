"""Which test metric the report's tables, comparisons and figures show (`--metric`), and its results.json key."""

from __future__ import annotations

from ssl_lightning.errors import UserError

# --metric name -> (results.json key, words for headings); all stored in 0-1, shown in percent
METRICS = {
    "acc": ("test_acc", "test accuracy"),
    "balanced_acc": ("test_balanced_acc", "test balanced accuracy"),
    "macro_f1": ("test_macro_f1", "test macro-F1"),
    "group_acc": ("test_group_acc", "patient-level test accuracy"),
    "group_balanced_acc": ("test_group_balanced_acc", "patient-level test balanced accuracy"),
}
DEFAULT = "acc"


def key(metric: str) -> str:
    return METRICS[metric][0]


def words(metric: str) -> str:
    return METRICS[metric][1]


def words_for_key(metric_key: str) -> str:
    """'test_balanced_acc' -> 'test balanced accuracy' (the key itself when unknown)."""
    return {k: text for k, text in METRICS.values()}.get(metric_key, metric_key)


def require(metric: str, runs: list) -> None:
    """One line when a successful run lacks the chosen metric (older results.json files do), before any output."""
    ok = [run for run in runs if run.ok]
    lacking = [run for run in ok if run.value(key(metric)) is None]
    if lacking:
        raise UserError(f"--metric {metric}: {len(lacking)} of {len(ok)} successful run(s) lack {key(metric)} in "
                        f"results.json (first: {lacking[0].results_path}); older runs only have test_acc: "
                        "report them with --metric acc, or re-run them")
