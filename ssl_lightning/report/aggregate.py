"""Cells of the study grid: the runs of one (data, protocol, column, label budget), averaged over replicates.

Two levels. A replicate is a (seed, split seed) pair; the seed draws the encoder (pretext stage, initial weights)
and the split seed the labelled subset. When a seed has several split seeds, its runs share one encoder and are
not independent draws of the method: a cell first averages the splits of each seed, then takes the mean and the
t interval over the seeds' means (df = seeds - 1). With one split per seed, as in the study, that is the plain
t interval over runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field

from ssl_lightning.errors import UserError
from ssl_lightning.methods.registry import SUPERVISED
from ssl_lightning.report.budget import Budget, fraction_text
from ssl_lightning.report.collect import Run
from ssl_lightning.report.configs import differing_keys
from ssl_lightning.report.statistics import Estimate, two_level_ci

__all__ = ["Cell", "build_cells", "by_group", "fraction_text", "per_seed"]


def per_seed(runs: list[Run], value) -> dict[Hashable, list[float]]:
    """seed -> the values of its runs (its label splits), in run order; a run without a seed is its own group."""
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for index, run in enumerate(runs):
        number = value(run)
        if number is not None:
            groups[run.seed if run.seed is not None else ("no seed", index)].append(number)
    return dict(groups)


@dataclass
class Cell:
    data: str
    protocol: str
    experiment: str
    label: str
    column_order: tuple
    budget: Budget
    runs: list[Run] = field(default_factory=list)
    metric_key: str = "test_acc"  # which results.json metric the table, comparisons and figures show

    @property
    def fraction(self) -> float | None:
        return self.budget.fraction

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]

    @property
    def n(self) -> int:
        """Successful runs (every (seed, split seed) counted)."""
        return len(self.ok_runs)

    @property
    def n_failed(self) -> int:
        return len(self.failed_runs)

    def seed_groups(self, metric_key: str | None = None) -> dict[Hashable, list[float]]:
        """seed -> the chosen metric (percent) of its successful runs, one value per label split."""
        chosen = metric_key or self.metric_key
        return per_seed(self.ok_runs, lambda r: None if r.value(chosen) is None else 100.0 * r.value(chosen))

    @property
    def n_encoders(self) -> int:
        """Pretext seeds among the successful runs: the independent units of the interval."""
        return len(per_seed(self.ok_runs, lambda r: 0.0))

    @property
    def splits_per_encoder(self) -> tuple[int, int]:
        """(fewest, most) distinct split seeds per seed among the successful runs; (0, 0) without any. A
        (seed, split seed) run twice is one split (averaged within its seed like any other run of that seed)."""
        splits: dict[Hashable, set] = defaultdict(set)
        for index, run in enumerate(self.ok_runs):
            splits[run.seed if run.seed is not None else ("no seed", index)].add(run.split_seed)
        counts = [len(v) for v in splits.values()]
        return (min(counts), max(counts)) if counts else (0, 0)

    @property
    def values(self) -> list[float]:
        """Per-run values of the chosen metric in percent, in run order."""
        return [100.0 * r.value(self.metric_key) for r in self.ok_runs if r.value(self.metric_key) is not None]

    @property
    def estimate(self) -> Estimate:
        """The chosen metric (percent): two-level mean and 95% CI, n = seeds."""
        return two_level_ci(self.seed_groups())

    @property
    def acc_values(self) -> list[float]:
        """Per-run test accuracy in percent, in run order."""
        return [100.0 * r.test_acc for r in self.ok_runs if r.test_acc is not None]

    @property
    def acc_estimate(self) -> Estimate:
        """Test accuracy (percent): two-level mean and 95% CI (t over seeds' means, df = seeds - 1), n = seeds."""
        return two_level_ci(self.seed_groups("test_acc"))

    @property
    def acc_percent(self) -> tuple[float | None, float | None]:
        """Mean and standard deviation (over the seeds' means) of the test accuracy in percent."""
        estimate = self.acc_estimate
        return estimate.mean, estimate.std

    @property
    def loss_estimate(self) -> Estimate:
        return two_level_ci(per_seed(self.ok_runs, lambda r: r.test_loss))

    @property
    def loss(self) -> tuple[float | None, float | None]:
        estimate = self.loss_estimate
        return estimate.mean, estimate.std

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.ok_runs]

    @property
    def repeated_seeds(self) -> list[int]:
        """Seeds averaged more than once with the same split seed (the same cell run in several sweeps): n then
        overstates the replicates. A seed repeated with different split seeds is a new label split."""
        replicates = [r.replicate for r in self.ok_runs if r.seed is not None]
        return sorted({seed for seed, split in replicates if replicates.count((seed, split)) > 1})

    @property
    def folds_text(self) -> str:
        """', 5 test folds pooled' when the runs pool outer test folds (folds.py), else ''."""
        counts = sorted({r.test_folds for r in self.ok_runs if r.test_folds is not None})
        if not counts:
            return ""
        return f", {counts[0] if len(counts) == 1 else f'{counts[0]}-{counts[-1]}'} test folds pooled"

    @property
    def design_text(self) -> str:
        """'n=3' (one run per seed), 'n=30: 3 seeds x 10 splits' when seeds hold several label splits, 'n=3: 2 seeds'
        when a (seed, split seed) was run more than once; ', 5 test folds pooled' added when each run pools the
        outer test folds of its seed and split (one observation each, never 5)."""
        if self.n == self.n_encoders:
            return f"n={self.n}{self.folds_text}"
        low, high = self.splits_per_encoder
        seeds = f"{self.n_encoders} seed{'s' if self.n_encoders != 1 else ''}"
        if high <= 1:
            return f"n={self.n}: {seeds}{self.folds_text}"
        return f"n={self.n}: {seeds} x {low if low == high else f'{low}-{high}'} splits{self.folds_text}"

    @property
    def is_reference(self) -> bool:
        """Supervised with every label: the study's upper reference row, not a fraction row."""
        return self.experiment == SUPERVISED and self.fraction == 1.0


def build_cells(runs: list[Run], metric_key: str = "test_acc") -> list[Cell]:
    """Cells sorted by data, protocol, column order, budget."""
    cells: dict[tuple, Cell] = {}
    for run in runs:
        key = (run.data, run.protocol, run.label, run.budget)
        if key not in cells:
            cells[key] = Cell(run.data, run.protocol, run.experiment, run.label, run.column_order, run.budget,
                              metric_key=metric_key)
        cells[key].runs.append(run)
    for cell in cells.values():
        _refuse_mixed_configurations(cell)
        cell.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, r.split_seed or 0, str(r.results_path)))
    return sorted(cells.values(), key=lambda c: (c.data, c.protocol, c.column_order, c.budget.order))


def _refuse_mixed_configurations(cell: Cell) -> None:
    """A cell averages replicates of one configuration only; collect gives differing configs their own columns,
    so this fires only if two configurations ended up under one label."""
    keys = differing_keys([run.config for run in cell.runs])
    if keys:
        raise UserError(f"the runs of {cell.label} at {cell.budget.text} ({cell.data}, {cell.protocol}) "
                        f"differ in {', '.join(keys)}; report them from separate folders")


def by_group(cells: list[Cell]) -> dict[tuple[str, str], list[Cell]]:
    """(data, protocol) -> its cells, in sorted order: one table and one set of figures each."""
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.data, cell.protocol)].append(cell)
    return dict(groups)
