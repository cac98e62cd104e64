"""The frozen-feature probes on fixed features: logistic regression against scikit-learn with the same C, weighted
k-NN against a written-out loop, and the settings that refuse a probe where it cannot apply."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from sklearn.linear_model import LogisticRegression

from ssl_lightning.config import settings as settings_module
from ssl_lightning.errors import UserError
from ssl_lightning.probes.knn import knn_probabilities
from ssl_lightning.probes.logistic import Standardizer, accuracy, fit_logistic, select_penalty

CONF = Path(__file__).resolve().parent.parent / "conf"


def _blobs(count: int, dim: int, classes: int, seed: int, spread: float = 1.6) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes (not separable: the penalty matters)."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, classes, (count,), generator=generator)
    return centres[labels] + spread * torch.randn(count, dim, generator=generator), labels


@pytest.mark.parametrize("penalty", [1e-3, 0.05, 1.0, 100.0])
def test_logistic_regression_matches_scikit_learn_with_the_same_c(penalty):
    train, train_labels = _blobs(400, 10, 4, seed=0)
    test, test_labels = _blobs(2000, 10, 4, seed=1)
    scaler = Standardizer.fit(train)
    ours = fit_logistic(scaler(train), train_labels, 4, penalty, max_iter=5000, tolerance=1e-9)
    reference = LogisticRegression(C=penalty, max_iter=10000, tol=1e-10).fit(scaler(train).numpy(),
                                                                               train_labels.numpy())
    ours_acc = accuracy(ours.logits(scaler(test)), test_labels)
    reference_acc = float((reference.predict(scaler(test).numpy()) == test_labels.numpy()).mean())
    assert abs(ours_acc - reference_acc) <= 1e-3
    assert 0.4 < ours_acc < 0.99  # neither chance nor separable: the test can tell penalties apart
    reference_probabilities = reference.predict_proba(scaler(test).numpy())
    np.testing.assert_allclose(ours.probabilities(scaler(test)).numpy(), reference_probabilities, atol=1e-4)
    scale = max(1.0, float(np.abs(reference.coef_).max()))
    np.testing.assert_allclose(ours.weight.numpy(), reference.coef_, atol=1e-3 * scale)


def test_the_penalty_is_chosen_on_validation_and_warm_starts_reach_the_cold_solution():
    train, train_labels = _blobs(300, 8, 3, seed=2)
    val, val_labels = _blobs(300, 8, 3, seed=3)
    grid = [1e-5, 1e-3, 1e-1, 10.0]
    choice = select_penalty(train, train_labels, val, val_labels, 3, grid, tolerance=1e-9)
    assert [c for c, _ in choice.scores] == sorted(grid)
    best = max(acc for _, acc in choice.scores)
    assert choice.val_acc == best
    assert choice.model.penalty == min(c for c, acc in choice.scores if acc == best)  # ties: stronger penalty
    assert choice.scores[0][1] < best  # C=1e-5 is near chance here: the grid matters
    cold = fit_logistic(train, train_labels, 3, choice.model.penalty, tolerance=1e-9)
    np.testing.assert_allclose(choice.model.probabilities(val).numpy(), cold.probabilities(val).numpy(), atol=1e-5)


def test_a_flat_start_does_not_end_the_penalty_path():
    """Few labels: the strongest penalties tie near chance; patience starts counting at the first rise (counting
    from the start stopped this path after C=1e-4, at 42% validation accuracy)."""
    train, train_labels = _blobs(30, 8, 3, seed=0)
    val, val_labels = _blobs(12, 8, 3, seed=10)
    grid = [10.0 ** e for e in range(-7, 2)]
    full = select_penalty(train, train_labels, val, val_labels, 3, grid)
    flat = [acc for _, acc in full.scores[:4]]
    assert len(set(flat)) == 1 and full.val_acc > flat[0]  # a flat start, then a rise
    stopped = select_penalty(train, train_labels, val, val_labels, 3, grid, patience=3)
    assert stopped.val_acc == full.val_acc and stopped.model.penalty == full.model.penalty


def test_the_penalty_path_stops_after_patience_values_without_a_better_one():
    train, train_labels = _blobs(300, 8, 3, seed=2)
    val, val_labels = _blobs(300, 8, 3, seed=3)
    grid = [10.0 ** e for e in range(-6, 6)]
    full = select_penalty(train, train_labels, val, val_labels, 3, grid)
    stopped = select_penalty(train, train_labels, val, val_labels, 3, grid, patience=2)
    accuracies = [acc for _, acc in full.scores]
    best_index = accuracies.index(max(accuracies))
    expected = len(grid)
    since, risen = 0, False
    for index, acc in enumerate(accuracies):  # the first index where 2 values in a row did not beat the best so far,
        if acc > max(accuracies[:index], default=-1.0):  # counted once accuracy has risen above the first C's
            since, risen = 0, index > 0
        elif risen:
            since += 1
        if since == 2:
            expected = index + 1
            break
    assert len(stopped.scores) == expected < len(grid)
    assert stopped.scores == full.scores[:expected]
    if best_index < expected:
        assert stopped.model.penalty == full.model.penalty


def _knn_by_hand(bank, bank_labels, queries, classes, k, temperature, metric):
    """One query at a time: similarities, sort, top k, exp(sim / T) votes per class, normalised."""
    rows = []
    for query in queries.tolist():
        similarities = []
        for item, label in zip(bank.tolist(), bank_labels.tolist(), strict=True):
            if metric == "cosine":
                dot = sum(a * b for a, b in zip(query, item, strict=True))
                similarity = dot / (math.sqrt(sum(a * a for a in query)) * math.sqrt(sum(b * b for b in item)))
            else:
                similarity = -math.sqrt(sum((a - b) ** 2 for a, b in zip(query, item, strict=True)))
            similarities.append((similarity, label))
        similarities.sort(key=lambda pair: -pair[0])
        votes = [0.0] * classes
        for similarity, label in similarities[:k]:
            votes[label] += math.exp(similarity / temperature)
        rows.append([v / sum(votes) for v in votes])
    return np.asarray(rows)


@pytest.mark.parametrize(("metric", "temperature"), [("cosine", 0.07), ("euclidean", 0.5)])
def test_knn_matches_a_written_out_loop(metric, temperature):
    bank, bank_labels = _blobs(60, 5, 3, seed=4)
    queries, _ = _blobs(25, 5, 3, seed=5)
    ks = [1, 7, 20, 100]  # 100 > the bank: every labelled image votes
    ours = knn_probabilities(bank, bank_labels, queries, 3, ks, temperature, metric)
    for k in ks:
        expected = _knn_by_hand(bank, bank_labels, queries, 3, min(k, 60), temperature, metric)
        np.testing.assert_allclose(ours[k].numpy(), expected, atol=1e-5)
        assert (ours[k].argmax(dim=1).numpy() == expected.argmax(axis=1)).all()


def _settings(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        config = compose("config", overrides=["+experiment=simclr", "data=synthetic", "profile=smoke",
                                               "paths.cache=/tmp/unused", *overrides])
    return settings_module.from_config(config)


def test_frozen_probe_settings_and_their_defaults():
    linear = _settings("downstream=linear").downstream
    assert (linear.protocol, linear.solver, linear.penalty_grid[0], linear.penalty_grid[-1]) == ("linear", "lbfgs",
                                                                                                  1e-6, 1e5)
    assert (linear.penalty_patience, linear.max_iter) == (3, 100)
    knn = _settings("downstream=knn").downstream
    assert (knn.protocol, knn.solver, knn.k, knn.temperature, knn.metric, knn.k_grid) == ("knn", None, 20, 0.07,
                                                                                          "cosine", None)
    assert _settings("downstream=knn", "downstream.k_grid=[5,10]").downstream.k_grid == (5, 10)
    assert _settings("downstream=linear", "downstream.solver=sgd").downstream.solver == "sgd"
    assert _settings().downstream.solver == "sgd"  # fine-tuning trains by SGD through the Trainer


@pytest.mark.parametrize(("overrides", "fragment"), [
    (["+downstream.solver=lbfgs"], "needs downstream=linear"),
    (["downstream=knn", "+downstream.solver=sgd"], "downstream=knn fits nothing"),
    (["downstream=linear", "downstream.solver=newton"], "downstream.solver='newton' unknown"),
    (["downstream=linear", "downstream.lr_grid=[0.1]"], "downstream.penalty_grid"),
    (["downstream=linear", "downstream.head=mlp"], "needs downstream.solver=sgd"),
    (["downstream=linear", "downstream.penalty_grid=[0.1,-1]"], "downstream.penalty_grid=[0.1, -1] is invalid"),
    (["downstream=linear", "+downstream.k=5"], "applies to downstream=knn only"),
    (["downstream=knn", "downstream.k=0"], "downstream.k=0"),
    (["downstream=knn", "downstream.metric=manhattan"], "cosine, euclidean"),
    (["downstream=knn", "downstream.temperature=0"], "downstream.temperature=0"),
])
def test_a_probe_key_where_it_cannot_apply_is_refused(overrides, fragment):
    with pytest.raises(UserError) as caught:
        _settings(*overrides)
    message = str(caught.value)
    assert fragment in message and "\n" not in message
