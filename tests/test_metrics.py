"""Test metrics against a hand computation on a fixed confusion matrix and against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from ssl_lightning.evaluation.metrics import classification_metrics


def _probabilities(predicted: list[int], num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), num_classes).float()


def test_metrics_match_a_hand_computation_on_a_fixed_confusion_matrix():
    # true 0: 8 images, 6 right, 2 called 1; true 1: 2 images, 1 right, 1 called 0.
    labels = [0] * 8 + [1] * 2
    predicted = [0] * 6 + [1] * 2 + [1, 0]
    metrics = classification_metrics(_probabilities(predicted, 2), torch.tensor(labels), 2)
    assert metrics.confusion == [[6, 2], [1, 1]]
    assert metrics.acc == pytest.approx(7 / 10)
    assert metrics.balanced_acc == pytest.approx((6 / 8 + 1 / 2) / 2)
    f1_class0 = 2 * 6 / (2 * 6 + 2 + 1)  # 2 TP / (2 TP + FN + FP)
    f1_class1 = 2 * 1 / (2 * 1 + 1 + 2)
    assert metrics.macro_f1 == pytest.approx((f1_class0 + f1_class1) / 2)
    assert metrics.per_class_acc == pytest.approx([0.75, 0.5])
    assert metrics.group_acc is None and "test_group_acc" not in metrics.as_results()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_scikit_learn_with_a_class_absent_from_the_labels(seed):
    rng = np.random.default_rng(seed)
    labels = rng.choice([0, 1, 3], size=60)  # class 2 has no test image
    predicted = rng.integers(0, 4, size=60)
    metrics = classification_metrics(_probabilities(predicted.tolist(), 4), torch.tensor(labels), 4)
    assert metrics.balanced_acc == pytest.approx(balanced_accuracy_score(labels, predicted))
    assert metrics.macro_f1 == pytest.approx(f1_score(labels, predicted, average="macro", zero_division=0))
    assert np.isnan(metrics.per_class_acc[2])


def test_group_metrics_aggregate_the_mean_probability_of_each_group():
    # patient a (class 0): one confident wrong tile, two mildly right ones -> mean says class 1 (wrong)
    # patient b (class 1): right; patient c (class 1): right
    probabilities = torch.tensor([[0.0, 1.0], [0.6, 0.4], [0.6, 0.4], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    groups = ["a", "a", "a", "b", "c", "c"]
    metrics = classification_metrics(probabilities, labels, 2, groups)
    assert metrics.acc == pytest.approx(5 / 6)
    assert metrics.num_groups == 3
    assert metrics.group_acc == pytest.approx(2 / 3)
    assert metrics.group_balanced_acc == pytest.approx((0 / 1 + 2 / 2) / 2)
    assert metrics.as_results()["test_group_acc"] == pytest.approx(2 / 3)
