"""The label-free-comparable monitors: leave-one-out k-NN accuracy and RankMe against written-out references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.methods.monitor import knn_leave_one_out_accuracy, rankme


def reference_knn(features: np.ndarray, labels: np.ndarray, k: int) -> float:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    correct = 0
    for i in range(len(unit)):
        others = [(float(unit[i] @ unit[j]), j) for j in range(len(unit)) if j != i]
        nearest = sorted(others, reverse=True)[:k]
        votes: dict[int, tuple[int, float]] = {}
        for similarity, j in nearest:
            count, total = votes.get(int(labels[j]), (0, 0.0))
            votes[int(labels[j])] = (count + 1, total + similarity)
        predicted = max(votes, key=lambda c: votes[c])  # most votes, then the larger summed similarity
        correct += int(predicted == labels[i])
    return correct / len(unit)


@pytest.mark.parametrize(("k", "chunk"), [(20, 1024), (5, 7), (1, 3)])
def test_knn_matches_the_reference(k, chunk):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=60)
    features = rng.normal(size=(60, 4)) + labels[:, None] * 0.7  # partly separable: neither 0 nor 1
    ours = knn_leave_one_out_accuracy(torch.tensor(features), torch.tensor(labels), k=k, chunk=chunk)
    expected = reference_knn(features, labels, k)
    assert ours == pytest.approx(expected)
    assert 0.2 < expected < 1.0


def test_knn_leaves_the_row_itself_out():
    """Each row's label is unique to it and one neighbour: with the row itself counted it would score 1.0."""
    features = torch.eye(4).repeat_interleave(2, dim=0) + 0.01 * torch.randn(8, 4)
    labels = torch.arange(8)
    assert knn_leave_one_out_accuracy(features, labels, k=1) == 0.0


def reference_rankme(matrix: np.ndarray) -> float:
    singular = np.linalg.svd(matrix, compute_uv=False)
    p = singular / np.abs(singular).sum() + 1e-7
    return float(math.exp(-(p * np.log(p)).sum()))


def test_rankme_matches_the_reference_and_measures_rank():
    rng = np.random.default_rng(1)
    full = rng.normal(size=(200, 16))
    assert rankme(torch.tensor(full)) == pytest.approx(reference_rankme(full), rel=1e-9)
    low = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 16))
    assert 1.5 < rankme(torch.tensor(low)) <= 3.01
    assert rankme(torch.tensor(full)) > 10


def test_pretext_validation_batches_carry_labels_and_training_batches_do_not():
    images = torch.randint(0, 255, (20, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(20) % 4
    data = PretextDataModule(images, np.arange(12), np.arange(12, 20), 4, 8, val_labels=labels)
    train_batch = next(iter(data.train_dataloader()))
    val_images, val_labels = next(iter(data.val_dataloader()))
    assert isinstance(train_batch, torch.Tensor) and train_batch.shape == (4, 1, 8, 8)
    assert torch.equal(val_labels, labels[12:20]) and torch.equal(val_images, images[12:20])
