"""Few labels measured right: every labelled image trains every epoch, budgets are floors of optimiser steps, and
learning-rate schedules advance per step."""

from __future__ import annotations

import json
import math

import pytest

from ssl_lightning.evaluation.step_plan import plan_steps
from ssl_lightning.methods.optim import OptimConfig, lr_factor
from tests.data.patient_tree import write_patient_tree
from tests.helpers import log_text


def test_one_step_epochs_are_lengthened_to_the_floor_and_validated_epochs_times():
    plan = plan_steps(labelled=100, batch_size=128, epochs=16, min_steps=200)
    assert plan.steps_per_epoch == 1 and plan.eval_every == 13 and plan.epochs == 16 * 13
    assert plan.max_steps >= 200 and plan.lengthened


def test_large_labelled_sets_keep_their_epochs():
    plan = plan_steps(labelled=6000, batch_size=128, epochs=16, min_steps=200)
    assert (plan.steps_per_epoch, plan.epochs, plan.eval_every) == (47, 16, 1) and not plan.lengthened


def test_steps_per_epoch_count_every_labelled_image_under_ddp_and_batch_limits():
    assert plan_steps(45, 32, 1, 0).steps_per_epoch == 2  # 23 + 22, none left out
    assert plan_steps(45, 32, 1, 0, world_size=2).steps_per_epoch == 1  # 23 per process
    assert plan_steps(450, 32, 1, 0, limit_train_batches=3).steps_per_epoch == 3
    assert plan_steps(450, 32, 1, 0, limit_train_batches=0.5).steps_per_epoch == 7


def test_cosine_and_warm_up_advance_per_optimiser_step():
    config = OptimConfig(scheduler="cosine", warmup_epochs=1)
    factors = [lr_factor(config, step, total_steps=40, steps_per_epoch=10) for step in range(40)]
    assert factors[:10] == pytest.approx([(s + 1) / 11 for s in range(10)])  # warm-up over one epoch's 10 steps
    decay = factors[10:]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))  # no staircase: every step lowers the lr
    assert decay[0] == pytest.approx(1.0) and decay[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 29 / 30)))


def test_a_few_label_patient_cell_trains_every_labelled_tile_for_min_steps(cli_in_process, tmp_path):
    """The issue's check: fine-tuning at 5% on a generated class/patient collection."""
    root = tmp_path / "tiles"
    write_patient_tree(root, {"benign": [5, 4, 6, 4, 5], "malignant": [4, 6, 5, 5, 3], "normal": [5, 5, 4, 6, 4]},
                       magnifications=("x40",), size=8)
    done = cli_in_process("+experiment=supervised", "data=imagefolder", f"data.root={root}", "data.fraction=0.05",
                          "profile=smoke", "downstream.limit_train_batches=1.0", "downstream.batch_size=4",
                          "downstream.epochs=2", "downstream.min_steps=9")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    labelled = results["num_labeled"]
    assert results["labeled_images_seen"] == labelled
    steps_per_epoch = math.ceil(labelled / 4)
    assert results["downstream_steps"] >= 9 and results["downstream_steps"] % steps_per_epoch == 0
    assert results["best_step"] <= results["downstream_steps"]
    if steps_per_epoch < 9:
        assert "downstream.min_steps=9 lengthens 2 epochs" in log_text(tmp_path / "run")
