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


OTHER_CHOICES = "use --metric acc, balanced_acc or macro_f1"


def _ungrouped(run) -> bool:
    """A run known to have had no patient groups: built-in data (one image per group) or data.group_by=none."""
    from ssl_lightning.data import registry

    spec = registry.find(run.data)  # the data set's own declaration, not a list of names to keep up to date
    return not (spec is not None and spec.groups) or (run.config or {}).get("data.group_by") == "none"


def require(metric: str, runs: list) -> None:
    """One line when a successful run lacks the chosen metric, before any output: for a patient-level metric
    the runs without groups are named as such (blaming "older runs" sent users re-running runs that can never have
    it); any other metric is missing from results.json files written before it existed."""
    ok = [run for run in runs if run.ok]
    lacking = [run for run in ok if run.value(key(metric)) is None]
    if not lacking:
        return
    first = lacking[0]
    head = f"--metric {metric}: {len(lacking)} of {len(ok)} successful run(s)"
    if "group" in key(metric):
        ungrouped = [run for run in lacking if _ungrouped(run)]
        if ungrouped:
            shown = ungrouped[0]
            group_by = (shown.config or {}).get("data.group_by")
            raise UserError(f"{head} have no patient groups (first: {shown.results_path}, data={shown.data}"
                            f"{', data.group_by=' + group_by if group_by else ''}), so there is no {words(metric)}; "
                            f"{OTHER_CHOICES}, or report runs on grouped data (data.group_by with data=imagefolder "
                            "or data=manifest)")
        raise UserError(f"{head} lack {key(metric)} in results.json (first: {first.results_path}): their data had "
                        "one image per group (data.group_by found no patients) or they predate patient-level "
                        f"metrics; {OTHER_CHOICES}")
    raise UserError(f"{head} lack {key(metric)} in results.json (first: {first.results_path}); older runs only have "
                    "test_acc: report them with --metric acc, or re-run them")
