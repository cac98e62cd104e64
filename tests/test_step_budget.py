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


def test_fine_tuning_folds_keep_patients_whole():
    """select=cv on grouped data: no patient's tiles on both sides of a fold; every labelled tile held out once."""
    import numpy as np
    import torch

    from ssl_lightning.data.base import ImageSet
    from ssl_lightning.data.fractions import LabelSplit
    from ssl_lightning.stages.finetune_cv import labelled_folds

    patients = np.array([f"c{c}-p{p}" for c in range(2) for p in range(4) for _ in range(3)])  # 2 classes x 4 x 3
    labels = torch.tensor([c for c in range(2) for _ in range(12)])
    images = ImageSet(torch.zeros(24, 1, 4, 4, dtype=torch.uint8), labels, torch.zeros(0, 1, 4, 4, dtype=torch.uint8),
                      torch.zeros(0, dtype=torch.long), ["a", "b"], train_groups=patients)
    labelled = np.arange(24)
    split = LabelSplit(labeled=labelled, pool=labelled, val=np.zeros(0, dtype=np.int64))
    folds = labelled_folds(images, split, k=5, seed=0)
    assert len(folds) == 4  # at most the patients of the smallest class
    held_out = np.concatenate([held for _, held in folds])
    assert sorted(held_out.tolist()) == labelled.tolist()
    for train, held in folds:
        assert not set(patients[train]) & set(patients[held])
        assert set(labels[held].tolist()) == {0, 1}  # stratified: both classes in every held-out fold
