"""How the downstream stage chooses: the monitored validation metric, diverging lr candidates, no silent fallback.

Real Hydra configs, real Lightning Trainers, real synthetic data; the CLI where the user-facing contract is at stake
(exit codes, results.json), in-process runs of the stage where a condition cannot be reached from the command line.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ssl_lightning.config.settings import from_config
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.evaluation.downstream_selection import METRICS, resolve_monitor, selected_on, validation_key
from ssl_lightning.stages import pipeline
from ssl_lightning.stages.downstream_stage import NoValidationMetric, check_validation_images, run_downstream
from ssl_lightning.stages.finetune_cv import choose
from ssl_lightning.training.finite_guard import DivergenceError
from tests.helpers import log_text, results_files
from tests.methods.lightning_kit import compact_encoder, constant_sgd, downstream_data, fit, synthetic_images

CONF = Path(__file__).resolve().parent.parent / "conf"
SMOKE = ("data=synthetic", "profile=smoke")


def _config(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["+experiment=supervised", *SMOKE, f"paths.cache={tmp_path / 'cache'}",
                                            *overrides])


def _scalars(events_dir: Path, tag: str) -> list[float]:
    values = []
    for path in sorted(events_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values += [event.value for event in accumulator.Scalars(tag)]
    return values


# --- the monitored metric ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("counts", "expected"), [
    ([100, 100, 100], "acc"), ([10, 15], "acc"), ([10, 16], "balanced_acc"), ([2480, 5429], "balanced_acc"),
    ([0, 12], "balanced_acc"),
])
def test_auto_monitor_follows_the_labelled_class_sizes(counts, expected):
    assert resolve_monitor("auto", counts) == expected
    assert resolve_monitor("acc", [10, 1000]) == "acc" and resolve_monitor("balanced_acc", [5, 5]) == "balanced_acc"
    assert selected_on("best", expected) == f"best_val_{expected}" and selected_on("last", expected) == "last"


def test_the_classifier_logs_every_metric_under_the_name_selection_watches(tmp_path):
    """Checkpointing, early stopping and candidate choice read `validation_key`; the Classifier must log it."""
    images = synthetic_images(channels=3, train_size=96)
    module = Classifier(compact_encoder(3), images.num_classes, constant_sgd(0.05), epochs=1)
    fit(module, downstream_data(images, batch_size=32), 2, str(tmp_path), validate_every=2)
    logged = set(module.trainer.callback_metrics)
    assert {validation_key(metric) for metric in METRICS} <= logged
    assert validation_key("balanced_acc") == "downstream/val_balanced_acc"


def test_balanced_accuracy_monitor_picks_the_checkpoint_and_is_recorded(tmp_path):
    cell = pipeline.prepare(_config(tmp_path, "downstream.monitor=balanced_acc", "downstream.epochs=3",
                                    "downstream.patience=null"))
    run_dir = tmp_path / "run"
    outcome = run_downstream(cell.settings, cell.encoder, cell.images, cell.split, tmp_path / "work", run_dir)
    assert outcome.monitor == "balanced_acc" and outcome.selected_on == "best_val_balanced_acc"
    per_epoch = _scalars(run_dir / "tb" / "downstream", validation_key("balanced_acc"))
    assert len(per_epoch) == 3
    assert outcome.validation["balanced_acc"] == pytest.approx(max(per_epoch), abs=1e-6)
    assert outcome.best_epoch == int(np.argmax(per_epoch)) + 1  # the first epoch reaching the best value
    accuracies = _scalars(run_dir / "tb" / "downstream", validation_key("acc"))
    assert outcome.best_val_acc == pytest.approx(accuracies[outcome.best_epoch - 1], abs=1e-6)
    results = outcome.as_results(cell.images.classes)
    assert results["monitor"] == "balanced_acc" and results["best_val_balanced_acc"] == outcome.validation[
        "balanced_acc"]
    assert results["best_val_acc"] == outcome.best_val_acc


@pytest.mark.parametrize("bad", ["downstream.monitor=f1", "downstream.select=first"])
def test_unknown_monitor_or_select_is_a_user_error(tmp_path, bad):
    with pytest.raises(UserError, match=bad.split("=")[0]):
        from_config(_config(tmp_path, bad))


# --- lr grid: a diverging candidate is dropped ------------------------------------------------------------------


def test_a_diverging_learning_rate_is_dropped_and_the_others_still_choose(cli_in_process, tmp_path):
    """Issue 21's acceptance command: the 1e8 candidate diverges (NaN loss), 0.05 is chosen."""
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream.lr_grid=[0.05,1e8]")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "ok" and cell["chosen_lr"] == 0.05
    assert cell["diverged_candidates"] == [{"lr": 1e8, "probe_layer": "last"}]
    logs = log_text(tmp_path / "run")
    assert "lr=1e+08 probe_layer=last diverged and is dropped" in logs and "loss became nan" in logs


def test_the_cell_fails_only_when_every_candidate_diverged(tmp_path):
    cell = pipeline.prepare(_config(tmp_path, "downstream.lr_grid=[1e8,1e9]"))
    with pytest.raises(DivergenceError, match="every one of the 2 downstream candidates diverged"):
        run_downstream(cell.settings, cell.encoder, cell.images, cell.split, tmp_path / "work", tmp_path / "run")


# --- no silent fallback to the last epoch -----------------------------------------------------------------------


def test_no_validation_split_exits_2_before_anything_trains(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=supervised", *SMOKE, "data.val_split=0", "downstream.select=val")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().count("\n") == 0
    assert "data.val_split=0" in done.stderr and "downstream.select=last" in done.stderr
    assert not list(tmp_path.rglob("results.json")) and not (tmp_path / "cache" / "cells").exists()


def test_without_validation_auto_fine_tunes_by_cross_validation_and_records_the_choice(cli_in_process, tmp_path):
    """select=auto (the default) with no validation images: lr and stopping step chosen on folds of the labelled
    set, then one refit on all of it, stopped at the chosen step."""
    done = cli_in_process("+experiment=supervised", *SMOKE, "data.val_split=0", "data.labels_per_class=6",
                          "downstream.limit_train_batches=1.0", "downstream.batch_size=8", "downstream.epochs=3",
                          "downstream.cv_folds=3", "downstream.lr_grid=[0.05,0.01]")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert (cell["select"], cell["selected_on"], cell["cv_folds"]) == ("cv", "cv_acc", 3)
    assert "select=auto: 0 validation images in the smallest class < 10" in cell["selection_note"]
    assert cell["chosen_lr"] in (0.05, 0.01) and cell["num_labeled"] == cell["labeled_images_seen"]
    # 24 labelled images, batch 8: 3 steps an epoch, validated at steps 3, 6, 9 on each fold; the refit stops there
    assert cell["best_step"] == cell["downstream_steps"] and cell["best_step"] in (3, 6, 9)
    assert f"downstream.select=cv (3 folds of 24 labelled images): lr={cell['chosen_lr']:g}" in log_text(
        tmp_path / "run")


def test_cross_validated_choice_takes_the_best_mean_then_the_lower_loss():
    curves = {0: [[(5, 0.5, 1.0), (10, 0.7, 0.9)], [(5, 0.6, 1.0), (10, 0.7, 0.8)]],
              1: [[(5, 0.7, 0.5), (10, 0.6, 0.5)], [(5, 0.7, 0.6)]]}  # candidate 1's fold 2 never reached step 10
    choice = choose(curves)
    assert (choice.candidate_index, choice.step, choice.folds) == (1, 5, 2)  # 0.70 at lower loss 0.55 than 0.85
    assert choice.score == pytest.approx(0.7) and choice.loss == pytest.approx(0.55)
    tied = choose({0: [[(5, 0.5, 0.9), (10, 0.5, 0.4)]]})
    assert tied.step == 10  # equal scores: the lower held-out loss, not the earlier step


def test_select_last_without_validation_tests_the_last_epoch_and_says_so(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=supervised", *SMOKE, "data.val_split=0", "downstream.select=last",
                          "downstream.epochs=2")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["selected_on"] == "last" and cell["num_val"] == 0
    assert cell["best_epoch"] == cell["epochs"]["downstream"] == 2
    assert cell["best_val_acc"] is None and cell["best_val_balanced_acc"] is None
    assert 0.0 <= cell["test_acc"] <= 1.0


def test_select_last_still_needs_validation_to_choose_among_candidates(tmp_path):
    with pytest.raises(UserError, match="lr_grid"):
        from_config(_config(tmp_path, "data.val_split=0", "downstream.select=last", "downstream.lr_grid=[0.1,0.01]"))
    with pytest.raises(UserError, match="limit_val_batches=0"):
        from_config(_config(tmp_path, "downstream.limit_val_batches=0"))


def test_a_missing_validation_metric_is_never_replaced_by_the_last_checkpoint(tmp_path):
    """A label split whose validation part is empty (validation ran on nothing, no metric was logged)."""
    cell = pipeline.prepare(_config(tmp_path, "downstream.select=val"))
    empty = dataclasses.replace(cell.split, selection=np.array([], dtype=np.int64))
    with pytest.raises(UserError, match="no validation images"):
        check_validation_images(cell.settings.downstream, len(empty.selection_val))
    with pytest.raises(NoValidationMetric, match="downstream/val_acc"):
        run_downstream(cell.settings, cell.encoder, cell.images, empty, tmp_path / "work", tmp_path / "run")
    last = dataclasses.replace(cell.settings, downstream=dataclasses.replace(cell.settings.downstream, select="last"))
    check_validation_images(last.downstream, 0)  # explicit: no error
    outcome = run_downstream(last, cell.encoder, cell.images, empty, tmp_path / "work_last", tmp_path / "run_last")
    assert outcome.selected_on == "last" and outcome.best_val_acc is None
    assert math.isfinite(outcome.test_acc)
