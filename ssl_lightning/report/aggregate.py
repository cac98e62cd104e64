"""Cells of the study grid: the runs of one (data, protocol, column, fraction), averaged over seeds."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from ssl_lightning.errors import UserError
from ssl_lightning.report.collect import Run
from ssl_lightning.report.configs import differing_keys
from ssl_lightning.report.statistics import Estimate, mean_ci

SUPERVISED = "supervised"


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1); no std from a single value."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


@dataclass
class Cell:
    data: str
    protocol: str
    experiment: str
    label: str
    column_order: tuple
    fraction: float
    runs: list[Run] = field(default_factory=list)

    @property
    def ok_runs(self) -> list[Run]:
        return [r for r in self.runs if r.ok]

    @property
    def failed_runs(self) -> list[Run]:
        return [r for r in self.runs if not r.ok]

    @property
    def n(self) -> int:
        return len(self.ok_runs)

    @property
    def n_failed(self) -> int:
        return len(self.failed_runs)

    @property
    def loss(self) -> tuple[float | None, float | None]:
        return mean_std([r.test_loss for r in self.ok_runs if r.test_loss is not None])

    @property
    def acc_percent(self) -> tuple[float | None, float | None]:
        return mean_std([100.0 * r.test_acc for r in self.ok_runs if r.test_acc is not None])

    @property
    def acc_values(self) -> list[float]:
        """Per-run test accuracy in percent, in run order."""
        return [100.0 * r.test_acc for r in self.ok_runs if r.test_acc is not None]

    @property
    def acc_estimate(self) -> Estimate:
        """Test accuracy (percent): mean, 95% CI with the t quantile at n-1 degrees of freedom, n."""
        return mean_ci(self.acc_values)

    @property
    def loss_estimate(self) -> Estimate:
        return mean_ci([r.test_loss for r in self.ok_runs if r.test_loss is not None])

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.ok_runs]

    @property
    def repeated_seeds(self) -> list[int]:
        """Seeds averaged more than once with the same split seed (the same cell run in several sweeps): n then
        overstates the replicates. A seed repeated with different split seeds is a new replicate."""
        replicates = [r.replicate for r in self.ok_runs if r.seed is not None]
        return sorted({seed for seed, split in replicates if replicates.count((seed, split)) > 1})

    @property
    def is_reference(self) -> bool:
        """Supervised with every label: the study's upper reference row, not a fraction row."""
        return self.experiment == SUPERVISED and self.fraction == 1.0


def build_cells(runs: list[Run]) -> list[Cell]:
    """Cells sorted by data, protocol, column order, fraction."""
    cells: dict[tuple, Cell] = {}
    for run in runs:
        key = (run.data, run.protocol, run.label, run.fraction)
        if key not in cells:
            cells[key] = Cell(run.data, run.protocol, run.experiment, run.label, run.column_order, run.fraction)
        cells[key].runs.append(run)
    for cell in cells.values():
        _refuse_mixed_configurations(cell)
        cell.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, r.split_seed or 0, str(r.results_path)))
    return sorted(cells.values(), key=lambda c: (c.data, c.protocol, c.column_order, c.fraction))


def _refuse_mixed_configurations(cell: Cell) -> None:
    """A cell averages replicates of one configuration only; collect gives differing configs their own columns,
    so this fires only if two configurations ended up under one label."""
    keys = differing_keys([run.config for run in cell.runs])
    if keys:
        raise UserError(f"the runs of {cell.label} at {fraction_text(cell.fraction)} ({cell.data}, {cell.protocol}) "
                        f"differ in {', '.join(keys)}; report them from separate folders")


def by_group(cells: list[Cell]) -> dict[tuple[str, str], list[Cell]]:
    """(data, protocol) -> its cells, in sorted order: one table and one set of figures each."""
    groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.data, cell.protocol)].append(cell)
    return dict(groups)


def fraction_text(fraction: float) -> str:
    """0.05 -> '5%', 0.125 -> '12.5%'."""
    return f"{round(100 * fraction, 6):g}%"
