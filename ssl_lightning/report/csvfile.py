"""results.csv: one row per (data, protocol, column label, fraction), numbers at full precision."""

from __future__ import annotations

import csv
from pathlib import Path

from ssl_lightning.report.aggregate import Cell

FIELDS = ("data", "protocol", "method", "label", "fraction", "n", "n_failed", "test_loss_mean", "test_loss_std",
          "test_acc_mean", "test_acc_std", "seeds")


def _number(value: float | None) -> str:
    return "" if value is None else repr(value)


def cell_row(cell: Cell) -> dict[str, str | int | float]:
    """test_acc in percent; std empty with fewer than two ok runs; seeds of the averaged runs, ';'-separated."""
    (loss, loss_std), (acc, acc_std) = cell.loss, cell.acc_percent
    return {"data": cell.data, "protocol": cell.protocol, "method": cell.experiment, "label": cell.label,
            "fraction": repr(cell.fraction), "n": cell.n, "n_failed": cell.n_failed,
            "test_loss_mean": _number(loss), "test_loss_std": _number(loss_std), "test_acc_mean": _number(acc),
            "test_acc_std": _number(acc_std), "seeds": ";".join("" if s is None else str(s) for s in cell.seeds)}


def write_csv(cells: list[Cell], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(cell_row(cell) for cell in cells)
