"""results.csv (one row per (data, protocol, column label, fraction)) and results_runs.csv (one row per run),
numbers at full precision."""

from __future__ import annotations

import csv
from pathlib import Path

from ssl_lightning.report.aggregate import Cell
from ssl_lightning.report.collect import Run

FIELDS = ("data", "protocol", "method", "label", "fraction", "n", "n_failed", "test_loss_mean", "test_loss_std",
          "test_acc_mean", "test_acc_std", "seeds", "test_acc_ci_low", "test_acc_ci_high", "test_loss_ci_low",
          "test_loss_ci_high", "split_seeds")
RUN_FIELDS = ("experiment", "label", "data", "protocol", "fraction", "seed", "split_seed", "status", "test_acc",
              "test_loss", "best_val_acc", "best_epoch", "chosen_lr", "run_folder", "error")


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def cell_row(cell: Cell) -> dict[str, str | int | float]:
    """test_acc in percent; std and 95% CI empty with fewer than two ok runs; seeds (and split seeds) of the
    averaged runs, ';'-separated in the same order."""
    (loss, loss_std), (acc, acc_std) = cell.loss, cell.acc_percent
    acc_ci, loss_ci = cell.acc_estimate, cell.loss_estimate
    return {"data": cell.data, "protocol": cell.protocol, "method": cell.experiment, "label": cell.label,
            "fraction": repr(cell.fraction), "n": cell.n, "n_failed": cell.n_failed,
            "test_loss_mean": _number(loss), "test_loss_std": _number(loss_std), "test_acc_mean": _number(acc),
            "test_acc_std": _number(acc_std), "seeds": ";".join("" if s is None else str(s) for s in cell.seeds),
            "test_acc_ci_low": _number(acc_ci.low), "test_acc_ci_high": _number(acc_ci.high),
            "test_loss_ci_low": _number(loss_ci.low), "test_loss_ci_high": _number(loss_ci.high),
            "split_seeds": ";".join(_number(r.split_seed) for r in cell.ok_runs)}


def write_csv(cells: list[Cell], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(cell_row(cell) for cell in cells)


def run_row(run: Run, root: Path) -> dict[str, str]:
    """As stored in results.json: test_acc and best_val_acc in 0-1; the run folder relative to the report root."""
    try:
        folder = str(run.run_dir.relative_to(root))
    except ValueError:
        folder = str(run.run_dir)
    return {"experiment": run.experiment, "label": run.label, "data": run.data, "protocol": run.protocol,
            "fraction": repr(run.fraction), "seed": _number(run.seed), "split_seed": _number(run.split_seed),
            "status": "ok" if run.ok else "failed", "test_acc": _number(run.test_acc),
            "test_loss": _number(run.test_loss), "best_val_acc": _number(run.best_val_acc),
            "best_epoch": _number(run.best_epoch), "chosen_lr": _number(run.chosen_lr), "run_folder": folder,
            "error": run.error or ""}


def write_runs_csv(cells: list[Cell], root: Path, path: Path) -> None:
    """Every run in table order (cell by cell), failed runs included with empty metrics."""
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=RUN_FIELDS)
        writer.writeheader()
        writer.writerows(run_row(run, root) for cell in cells for run in cell.runs)
