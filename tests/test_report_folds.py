"""Outer test folds (`data.test_folds=K`) in the report: the K runs of one seed and split are pooled into one
observation, weighted by their test images, never counted as K replicates (ssl_lightning/report/folds.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.aggregate import build_cells
from ssl_lightning.report.collect import collect
from ssl_lightning.report.folds import cell_folder
from tests.conftest import call_main

REPO = Path(__file__).resolve().parent.parent
# two folds of two classes: (confusion, test accuracy); fold 0 holds 30 test images, fold 1 holds 10
FOLDS = [([[18, 2], [4, 6]], 0.8), ([[1, 1], [5, 3]], 0.4)]
POOLED_ACC = (24 + 4) / 40  # 0.7, not the plain mean 0.6
POOLED_BALANCED = (19 / 22 + 9 / 18) / 2  # recall per class from the summed matrix [[19, 3], [9, 9]]
WEIGHTED_BALANCED = (30 * (0.9 + 0.6) / 2 + 10 * (0.5 + 0.375) / 2) / 40  # num_test-weighted, no matrices


def _write_fold(root: Path, experiment: str, seed: int, fold: int, confusion: list[list[int]] | None, acc: float,
                offset: float = 0.0, status: str = "ok") -> None:
    matrix = confusion or FOLDS[fold][0]
    recall = [matrix[c][c] / sum(matrix[c]) for c in range(2)]
    results = {"status": status, "experiment": experiment, "data": "patients", "protocol": "linear",
               "fraction": 0.05, "seed": seed, "split_seed": seed, "test_fold": fold, "test_folds": 2,
               "num_test": sum(map(sum, matrix)), "test_loss": 1.0 - acc, "test_acc": acc + offset,
               "test_balanced_acc": sum(recall) / 2 + offset, "per_class_acc": dict(zip("ab", recall, strict=True)),
               "config": {"data": {"name": "patients", "test_folds": 2, "test_fold": fold}}}
    if confusion is not None:
        results["test_confusion"] = confusion
    if status != "ok":
        results = {**{k: results[k] for k in ("status", "experiment", "data", "protocol", "fraction", "seed",
                                               "split_seed", "test_fold", "test_folds")}, "error": "RuntimeError: x"}
    folder = root / f"{experiment}_s{seed}" / f"fold_{fold}"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """Three seeds of each arm, two folds each; the method sits 5 points above the baseline in every fold."""
    for experiment, offset in (("simclr", 0.05), ("supervised", 0.0)):
        for seed in range(3):
            for fold, (confusion, acc) in enumerate(FOLDS):
                _write_fold(tmp_path, experiment, seed, fold, confusion, acc + 0.01 * seed, offset)
    return tmp_path


def test_a_seeds_folds_are_one_run_weighted_by_test_images(sweep):
    runs = {(r.experiment, r.seed): r for r in collect(sweep).runs}
    assert len(runs) == 6  # 12 fold runs, 6 pooled observations
    baseline = runs[("supervised", 0)]
    assert baseline.ok and baseline.test_acc == pytest.approx(POOLED_ACC)
    assert baseline.metrics["test_balanced_acc"] == pytest.approx(POOLED_BALANCED)
    assert (baseline.num_test, baseline.test_folds, baseline.test_fold) == (40, 2, None)
    assert baseline.test_loss == pytest.approx((30 * 0.2 + 10 * 0.6) / 40)
    assert baseline.run_dir == sweep / "supervised_s0"
    (cell,) = [c for c in build_cells(list(runs.values())) if c.experiment == "simclr"]
    assert (cell.n, cell.n_encoders) == (3, 3)  # seeds, never seeds x folds
    assert cell.design_text == "n=3, 2 test folds pooled"


def test_without_confusion_matrices_balanced_accuracy_is_the_num_test_weighted_mean(tmp_path):
    for fold, (_, acc) in enumerate(FOLDS):
        _write_fold(tmp_path, "simclr", 0, fold, None, acc)
    (run,) = collect(tmp_path).runs
    assert run.metrics["test_balanced_acc"] == pytest.approx(WEIGHTED_BALANCED)
    assert run.test_acc == pytest.approx(POOLED_ACC)


def test_a_missing_or_failed_fold_fails_the_seed_instead_of_averaging_part_of_the_patients(tmp_path):
    _write_fold(tmp_path, "simclr", 0, 0, *FOLDS[0])  # fold 1 never written
    _write_fold(tmp_path, "simclr", 1, 0, *FOLDS[0])
    _write_fold(tmp_path, "simclr", 1, 1, *FOLDS[1], status="failed")
    runs = {r.seed: r for r in collect(tmp_path).runs}
    assert not runs[0].ok and runs[0].error == "test fold(s) 1 of 2 missing: not every patient tested"
    assert not runs[1].ok and runs[1].error == "test fold 1 of 2 failed: RuntimeError: x"


def test_the_cell_folder_drops_the_fold_part_above_or_below_a_split():
    assert cell_folder(Path("/s/cell/fold_3/results.json")) == Path("/s/cell")
    assert cell_folder(Path("/s/cell/split_2/fold_0/results.json")) == Path("/s/cell/split_2")
    assert cell_folder(Path("/s/cell/fold_0/split_2/results.json")) == Path("/s/cell/split_2")


def test_the_report_compares_pooled_seeds(sweep):
    done = call_main(report_main, [str(sweep), "--embedding-points", "0", "--margin", "0.5"], REPO)
    assert done.returncode == 0, done.stderr
    with (sweep / "comparisons.csv").open(newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    assert (row["n_method"], row["seeds_method"], row["paired_seeds"], row["df"]) == ("3", "3", "3", "2.0")
    assert float(row["diff_points"]) == pytest.approx(5.0)
    assert (row["margin"], row["verdict"]) == ("0.5", "inconclusive")  # +5 in every seed: zero spread, no test
    with (sweep / "results_runs.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 6 and {(r["run_folder"], r["test_folds"], r["num_test"]) for r in rows} == {
        (f"{e}_s{s}", "2", "40") for e in ("simclr", "supervised") for s in range(3)}
    assert "(n=3, 2 test folds pooled)" in (sweep / "results.md").read_text()
