"""Which test metric the report's tables, comparisons and figures show (`--metric`), and its results.json key.

Everything here reads the one declaration, `ssl_lightning.record.TEST_METRICS`, when called (never a copy taken at
import), so a declared metric is a `--metric` choice, a results_runs.csv column and a table heading at once."""

from __future__ import annotations

from ssl_lightning import record
from ssl_lightning.errors import UserError
from ssl_lightning.record import MetricSpec

DEFAULT = "acc"


def declared() -> tuple[MetricSpec, ...]:
    """Every declared test metric, stored in 0-1 and shown in percent."""
    return record.TEST_METRICS


def choices() -> tuple[str, ...]:
    """The `--metric` names."""
    return tuple(metric.option for metric in declared())


def spec(metric: str) -> MetricSpec:
    return next(m for m in declared() if m.option == metric)


def key(metric: str) -> str:
    return spec(metric).key


def words(metric: str) -> str:
    return spec(metric).words


def spec_for_key(metric_key: str) -> MetricSpec:
    """The declared metric stored under `metric_key` (for an undeclared key: a percent metric named by the key)."""
    return record.declared_metric(metric_key) or MetricSpec(metric_key, metric_key, metric_key)


def words_for_key(metric_key: str) -> str:
    """'test_balanced_acc' -> 'test balanced accuracy' (the key itself when unknown)."""
    return spec_for_key(metric_key).words


def require(metric: str, runs: list) -> None:
    """One line when a successful run lacks the chosen metric (older results.json files do), before any output."""
    ok = [run for run in runs if run.ok]
    lacking = [run for run in ok if run.value(key(metric)) is None]
    if lacking:
        raise UserError(f"--metric {metric}: {len(lacking)} of {len(ok)} successful run(s) lack {key(metric)} in "
                        f"results.json (first: {lacking[0].results_path}); older runs only have test_acc: "
                        "report them with --metric acc, or re-run them")
