"""The FixMatch arm (+experiment=fixmatch): strong views differ from weak ones, only confident pseudo-labels count,
the unlabelled batches follow the labelled epoch, a cell runs end to end and records its mask rate, and a bad
value is one line before anything trains."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ssl_lightning.data.augment import downstream_view
from ssl_lightning.data.fixmatch_data import UnlabeledBatchSampler
from ssl_lightning.evaluation.fixmatch import (
    FixMatchParams,
    check_fixmatch,
    fixmatch_params,
    random_cutout,
    strong_view,
    unlabeled_loss,
)
from ssl_lightning.report.columns import display

CONF = Path(__file__).resolve().parents[1] / "conf"
CELL = ("+experiment=fixmatch", "data=synthetic", "profile=smoke")


def test_the_experiment_file_holds_the_typed_defaults_and_the_report_names_the_column():
    section = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / "fixmatch.yaml"))["fixmatch"]
    assert fixmatch_params({"fixmatch": section}) == FixMatchParams() == FixMatchParams(0.95, 3, 1.0)
    assert display("fixmatch", "finetune") == "FixMatch"


def test_the_strong_view_differs_from_the_weak_one_and_keeps_shape_and_dtype():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(16, 3, 12, 12, generator=generator)
    weak = downstream_view(images, generator=generator)
    strong = strong_view(images, generator=generator)
    assert strong.shape == weak.shape == images.shape and strong.dtype == images.dtype
    assert float(strong.min()) >= 0.0 and float(strong.max()) <= 1.0
    assert not torch.allclose(strong, weak, atol=1e-3)
    cut = random_cutout(torch.zeros(8, 1, 10, 10), generator=generator)
    erased = (cut == 0.5).flatten(1).sum(dim=1)
    assert bool((erased > 0).all()) and bool((erased <= 25).all())  # a square of half the side, clipped at borders


def test_unlabelled_loss_counts_only_confident_pseudo_labels():
    strong = torch.tensor([[0.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    unsure = torch.zeros(2, 3)  # 1/3 each: nothing reaches 0.95
    loss, rate = unlabeled_loss(unsure, strong, threshold=0.95)
    assert float(loss) == 0.0 and float(rate) == 0.0
    sure = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # the first image is confident of class 0
    loss, rate = unlabeled_loss(sure, strong, threshold=0.95)
    expected = torch.nn.functional.cross_entropy(strong[:1], torch.tensor([0])) / 2  # mean over both images
    assert float(rate) == 0.5 and float(loss) == pytest.approx(float(expected)) and float(loss) > 0


def test_unlabelled_batches_follow_the_labelled_epoch_and_cycle_the_pool():
    fresh = list(UnlabeledBatchSampler(10, 3, 2, seed=1))  # a new sampler starts at epoch 0
    sampler = UnlabeledBatchSampler(10, 3, 2, seed=1)
    drawn = []
    for epoch in range(5):  # 5 epochs x 2 steps x 3 images = 30 = three passes over the pool of 10
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 2 and all(len(batch) == 3 for batch in batches)
        drawn += [int(i) for batch in batches for i in batch]
    assert [int(i) for batch in fresh for i in batch] == drawn[:6]
    assert np.bincount(drawn, minlength=10).tolist() == [3] * 10
    ranks = [UnlabeledBatchSampler(10, 3, 2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for first, second in zip(*ranks, strict=True):
        assert not set(first.tolist()) & set(second.tolist())


def test_fixmatch_fine_tunes_only_and_is_chosen_on_validation():
    from ssl_lightning.errors import UserError

    with pytest.raises(UserError, match="downstream=finetune only, not downstream=linear"):
        check_fixmatch("fixmatch", "linear", {})
    check_fixmatch("supervised", "linear", {})  # other arms untouched
    with pytest.raises(UserError, match=r"unknown config key\(s\) \['fixmatch.tau'\]"):
        fixmatch_params({"fixmatch": {"tau": 0.9}})


def test_a_fixmatch_cell_runs_at_ten_labels_per_class_and_records_its_mask_rate(cli_in_process, tmp_path):
    done = cli_in_process(*CELL, "data.labels_per_class=10")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["status"], results["experiment"], results["encoder"]) == ("ok", "fixmatch", "random")
    assert results["pretext_key"] is None and results["num_labeled"] == 10 * results["config"]["data"]["num_classes"]
    recorded = results["fixmatch"]
    assert (recorded["threshold"], recorded["mu"], recorded["lambda_u"]) == (0.95, 3, 1.0)
    assert 0.0 <= recorded["mask_rate"] <= 1.0 and recorded["unlabeled_loss"] >= 0.0
    assert recorded["unlabeled_images"] > results["num_labeled"]  # the pool, not the labelled subset


def test_a_bad_threshold_is_one_line_before_anything_trains(cli_in_process, tmp_path):
    done = cli_in_process(*CELL, "fixmatch.threshold=1.5")
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "fixmatch.threshold=1.5" in lines[0] and "[0, 1]" in lines[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run" / "results.json").exists()
