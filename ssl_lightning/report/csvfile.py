"""results.csv (one row per (data, protocol, column label, label budget)) and results_runs.csv (one row per run),
numbers at full precision; and reading a results_runs.csv back, so stored studies can be re-reported."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ssl_lightning.errors import UserError
from ssl_lightning.report.aggregate import Cell
from ssl_lightning.report.collect import SELECTION_KEYS, Collection, Run
from ssl_lightning.report.metric_choice import declared

FIELDS = ("data", "protocol", "method", "label", "fraction", "n", "n_failed", "test_loss_mean", "test_loss_std",
          "test_acc_mean", "test_acc_std", "seeds", "test_acc_ci_low", "test_acc_ci_high", "test_loss_ci_low",
          "test_loss_ci_high", "split_seeds", "labels_per_class", "n_seeds", "splits_per_seed", "metric",
          "metric_mean", "metric_std", "metric_ci_low", "metric_ci_high")
BASE_RUN_FIELDS = ("experiment", "label", "data", "protocol", "fraction", "seed", "split_seed", "status", "test_acc",
                   "test_loss", "best_val_acc", "best_epoch", "chosen_lr", "run_folder", "error", "labels_per_class")
FOLD_RUN_FIELDS = ("test_folds", "num_test")  # after the metrics: a pooled run's K and its test images


def extra_metrics() -> tuple[str, ...]:
    """results.json keys of the declared test metrics other than test_acc (which has its own column): one
    results_runs.csv column each, in declaration order."""
    return tuple(metric.key for metric in declared() if metric.key != "test_acc")


def run_fields() -> tuple[str, ...]:
    """The selection columns come last, so the older columns keep their places."""
    return (*BASE_RUN_FIELDS, *extra_metrics(), *FOLD_RUN_FIELDS, *SELECTION_KEYS)


def _number(value: float | int | None) -> str:
    return "" if value is None else repr(value)


def cell_row(cell: Cell) -> dict[str, str | int | float]:
    """test_acc and the chosen metric in percent, two-level (std over the seeds' means, 95% CI over seeds); std
    and CI empty with fewer than two seeds; seeds (and split seeds) of the averaged runs, ';'-separated in the same
    order; splits_per_seed '10' or '9-10'."""
    (loss, loss_std), (acc, acc_std) = cell.loss, cell.acc_percent
    acc_ci, loss_ci, shown = cell.acc_estimate, cell.loss_estimate, cell.estimate
    low, high = cell.splits_per_encoder
    return {"data": cell.data, "protocol": cell.protocol, "method": cell.experiment, "label": cell.label,
            "fraction": _number(cell.fraction), "n": cell.n, "n_failed": cell.n_failed,
            "test_loss_mean": _number(loss), "test_loss_std": _number(loss_std), "test_acc_mean": _number(acc),
            "test_acc_std": _number(acc_std), "seeds": ";".join("" if s is None else str(s) for s in cell.seeds),
            "test_acc_ci_low": _number(acc_ci.low), "test_acc_ci_high": _number(acc_ci.high),
            "test_loss_ci_low": _number(loss_ci.low), "test_loss_ci_high": _number(loss_ci.high),
            "split_seeds": ";".join(_number(r.split_seed) for r in cell.ok_runs),
            "labels_per_class": _number(cell.budget.labels_per_class), "n_seeds": cell.n_encoders,
            "splits_per_seed": str(low) if low == high else f"{low}-{high}", "metric": cell.metric_key,
            "metric_mean": _number(shown.mean), "metric_std": _number(shown.std),
            "metric_ci_low": _number(shown.low), "metric_ci_high": _number(shown.high)}


def write_csv(cells: list[Cell], path: Path) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(cell_row(cell) for cell in cells)


def run_row(run: Run, root: Path) -> dict[str, str]:
    """As stored in results.json: test_acc and best_val_acc in 0-1; the run folder relative to the report root.
    A run that pools outer test folds (folds.py) is one row: its cell folder, test_folds = K, the pooled values."""
    try:
        folder = str(run.run_dir.relative_to(root))
    except ValueError:
        folder = str(run.run_dir)
    return {"experiment": run.experiment, "label": run.label, "data": run.data, "protocol": run.protocol,
            "fraction": _number(run.fraction), "seed": _number(run.seed), "split_seed": _number(run.split_seed),
            "status": "ok" if run.ok else "failed", "test_acc": _number(run.test_acc),
            "test_loss": _number(run.test_loss), "best_val_acc": _number(run.best_val_acc),
            "best_epoch": _number(run.best_epoch), "chosen_lr": _number(run.chosen_lr), "run_folder": folder,
            "error": run.error or "", "labels_per_class": _number(run.labels_per_class),
            "test_folds": _number(run.test_folds), "num_test": _number(run.num_test),
            **{key: _number(run.metrics.get(key)) for key in extra_metrics()},
            **{key: _text(run.selection.get(key)) for key in SELECTION_KEYS}}


def _text(value: str | int | float | None) -> str:
    return value if isinstance(value, str) else _number(value)


def write_runs_csv(cells: list[Cell], root: Path, path: Path) -> None:
    """Every run in table order (cell by cell), failed runs included with empty metrics."""
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=run_fields())
        writer.writeheader()
        writer.writerows(run_row(run, root) for cell in cells for run in cell.runs)


def _parsed(text: str | None, kind: type) -> float | int | None:
    if text is None or text.strip() == "":
        return None
    value = kind(float(text)) if kind is int else float(text)
    return value if math.isfinite(value) else None


def _read_selection(row: dict[str, str]) -> dict[str, str | int | float]:
    """The selection columns a results_runs.csv holds (older files have none): whole numbers back as int, other
    numbers as float, words (`cv`, `last`) as written."""
    found: dict[str, str | int | float] = {}
    for key in SELECTION_KEYS:
        text = (row.get(key) or "").strip()
        if text:
            found[key] = _as_number(text)
    return found


def _as_number(text: str) -> str | int | float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_runs_csv(path: Path) -> Collection:
    """Runs from a results_runs.csv this module wrote (its column labels kept as written; no config, no curves).

    Used to re-report a stored study (docs/study/) with the current statistics."""
    try:
        with path.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"cannot read {path}: {error}") from error
    needed = {"experiment", "label", "data", "protocol", "fraction", "seed", "split_seed", "status", "test_acc"}
    if not rows or needed - set(rows[0]):
        raise UserError(f"{path} is not a results_runs.csv (needs columns {', '.join(sorted(needed))})")
    runs = []
    for number, row in enumerate(rows, start=2):
        if _parsed(row["fraction"], float) is None and _parsed(row.get("labels_per_class"), int) is None:
            raise UserError(f"{path} line {number}: neither fraction nor labels_per_class is given")
        ok = row["status"] == "ok" and _parsed(row["test_acc"], float) is not None
        metrics = {key: _parsed(row.get(key), float) for key in extra_metrics()}
        runs.append(Run(
            results_path=path.parent / (row.get("run_folder") or "run") / "results.json", ok=ok,
            experiment=row["experiment"], data=row["data"], protocol=row["protocol"],
            fraction=_parsed(row["fraction"], float), seed=_parsed(row["seed"], int), variant=(),
            test_loss=_parsed(row.get("test_loss"), float) if ok else None,
            test_acc=_parsed(row["test_acc"], float) if ok else None,
            error=None if ok else (row.get("error") or "failed"),
            split_seed=_parsed(row["split_seed"], int), best_val_acc=_parsed(row.get("best_val_acc"), float),
            best_epoch=_parsed(row.get("best_epoch"), int), chosen_lr=_parsed(row.get("chosen_lr"), float),
            labels_per_class=_parsed(row.get("labels_per_class"), int),
            test_folds=_parsed(row.get("test_folds"), int), num_test=_parsed(row.get("num_test"), int),
            metrics={k: v for k, v in metrics.items() if v is not None}, stored_label=row["label"],
            selection=_read_selection(row)))
    return Collection(root=path.parent, runs=runs, problems=[])
