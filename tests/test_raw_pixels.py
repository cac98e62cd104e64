"""The raw-pixel arm (+experiment=raw_pixels): pixels averaged down only when too many, probed by the frozen
protocols like any encoder (its logistic regression matches scikit-learn), refused under fine-tuning in one line."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ssl_lightning.models.pixels import pixel_encoder, pixel_grid
from ssl_lightning.stages.feature_store import FILE_NAME
from tests.conftest import run_entry

CELL = ("+experiment=raw_pixels", "data=synthetic", "profile=smoke")


def test_small_images_are_kept_and_large_ones_area_averaged_below_the_limit():
    assert pixel_grid(1, 28, 28, 4096) == (28, 28)  # Fashion-MNIST: 784 values as they are
    assert pixel_grid(3, 32, 32, 4096) == (32, 32)  # CIFAR-10: 3,072
    assert pixel_grid(3, 96, 96, 4096) == (36, 36)  # STL-10: 3,888 <= 4,096
    images = torch.arange(64.0).reshape(1, 1, 8, 8)
    encoder = pixel_encoder(1, (8, 8), max_features=16)
    assert encoder.feature_dim == 16 and not list(encoder.parameters())
    blocks = images.reshape(1, 1, 4, 2, 4, 2).mean(dim=(3, 5)).flatten(1)  # each value: the mean of a 2 x 2 block
    assert torch.equal(encoder(images), blocks)
    assert torch.equal(pixel_encoder(1, (8, 8))(images), images.flatten(1))


def _cli(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    """One cell through the CLI's entry function, in-process."""
    return run_entry([*CELL, *overrides], tmp_path)


def test_raw_pixels_are_probed_like_an_encoder_and_match_scikit_learn(tmp_path):
    done = _cli(tmp_path, "downstream=linear", "data.fraction=0.5")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["status"], results["encoder"], results["protocol"], results["solver"]) == ("ok", "raw_pixels",
                                                                                               "linear", "lbfgs")
    assert results["pretext_key"] is None and "pretext" not in results["seconds"]
    arrays = torch.load(tmp_path / "cache" / "features" / results["feature_key"] / FILE_NAME, weights_only=True)
    assert arrays["train"].shape == (512, 3 * 16 * 16) and float(arrays["train"].abs().max()) <= 1.0
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    train = arrays["train"][subset["labeled_indices"]].double().numpy()
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    reference = LogisticRegression(C=results["chosen_penalty"], max_iter=10000, tol=1e-8).fit(
        (train - mean) / std, arrays["train_labels"][subset["labeled_indices"]].numpy())
    accuracy = float((reference.predict((arrays["test"].double().numpy() - mean) / std)
                      == arrays["test_labels"].numpy()).mean())
    assert abs(accuracy - results["test_acc"]) <= 1e-3


def test_raw_pixels_under_fine_tuning_is_one_line_naming_the_frozen_protocols(tmp_path):
    done = _cli(tmp_path)  # downstream=finetune is the default
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "raw_pixels" in lines[0] and "downstream=linear" in lines[0] and "downstream=knn" in lines[0]
    assert not (tmp_path / "run").exists()
