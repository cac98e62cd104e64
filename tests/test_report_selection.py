"""What each run's downstream stage chose (C, k, layer, step) and on what (`selected_on`) reaches results_runs.csv,
survives re-reporting that CSV, and is pooled over test folds only where the folds agree (report/collect.py,
report/csvfile.py, report/folds.py): without it a reader cannot tell why a seed's probe scored as it did."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.collect import collect
from ssl_lightning.report.csvfile import read_runs_csv
from tests.conftest import call_main

REPO = Path(__file__).resolve().parent.parent
LINEAR = {"select": "cv", "selected_on": "cv_balanced_acc", "chosen_C": 0.01, "probe_layer": "last"}
KNN = {"select": "val", "selected_on": "best_val_acc", "chosen_k": 20, "probe_layer": 3}
FINETUNE = {"select": "cv", "selected_on": "cv_acc", "best_step": 143, "downstream_steps": 143,
            "labeled_images_seen": 100, "chosen_lr": 0.05}


def _write(folder: Path, protocol: str, seed: int, chosen: dict, acc: float, **extra) -> None:
    results = {"status": "ok", "experiment": "simclr", "data": "fashion_mnist", "protocol": protocol,
               "labels_per_class": 10, "seed": seed, "split_seed": seed, "test_acc": acc, "test_loss": 1.0,
               "num_test": 100, **chosen, **extra}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


def _rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as stream:
        return {(row["protocol"], row["seed"]): row for row in csv.DictReader(stream)}


def test_the_chosen_values_are_columns_of_results_runs_and_survive_rereporting(tmp_path):
    sweep = tmp_path / "sweep"
    for seed in range(2):
        for protocol, chosen in (("linear", LINEAR), ("knn", KNN), ("finetune", FINETUNE)):
            _write(sweep / f"{protocol}_s{seed}", protocol, seed, chosen, 0.5 + 0.1 * seed)
    done = call_main(report_main, [str(sweep), "--embedding-points", "0"], REPO)
    assert done.returncode == 0, done.stderr
    rows = _rows(sweep / "results_runs.csv")
    assert (rows["linear", "0"]["chosen_C"], rows["linear", "0"]["selected_on"]) == ("0.01", "cv_balanced_acc")
    assert (rows["knn", "1"]["chosen_k"], rows["knn", "1"]["probe_layer"], rows["knn", "1"]["chosen_C"]) == (
        "20", "3", "")
    finetune = rows["finetune", "0"]
    assert [finetune[k] for k in ("best_step", "downstream_steps", "labeled_images_seen", "chosen_lr")] == [
        "143", "143", "100", "0.05"]

    stored = read_runs_csv(sweep / "results_runs.csv").runs
    again = {(run.protocol, run.seed): run.selection for run in stored}
    assert again["linear", 0] == LINEAR and again["knn", 1] == KNN
    assert again["finetune", 0] == {k: v for k, v in FINETUNE.items() if k != "chosen_lr"}  # own column


def test_fold_runs_keep_only_the_choices_every_fold_made(tmp_path):
    for fold, step in enumerate((40, 60)):  # the same C in both folds, a different stopping step
        _write(tmp_path / "cell" / f"fold_{fold}", "linear", 0, {**LINEAR, "best_step": step}, 0.6,
               test_fold=fold, test_folds=2)
    (pooled,) = collect(tmp_path).runs
    assert pooled.ok and pooled.test_folds == 2
    assert pooled.selection == LINEAR  # chosen_C agreed; best_step differed, so it is left empty
