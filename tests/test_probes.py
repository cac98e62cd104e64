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
from ssl_lightning.probes.logistic import HeldOut, PathDiverged, Standardizer, accuracy, fit_logistic, select_penalty
from ssl_lightning.probes.scoring import Scored, better, choose, held_out_score

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


def _path(train, train_labels, val, val_labels, grid, **options):
    return select_penalty([HeldOut(train, train_labels, val, val_labels)], 3, grid, **options)


def _accuracies(choice) -> list[float]:
    return [c.score for c in choice.scores]


def test_the_penalty_is_chosen_on_validation_and_warm_starts_reach_the_cold_solution():
    train, train_labels = _blobs(300, 8, 3, seed=2)
    val, val_labels = _blobs(300, 8, 3, seed=3)
    grid = [1e-5, 1e-3, 1e-1, 10.0]
    choice = _path(train, train_labels, val, val_labels, grid, tolerance=1e-9)
    assert [c.value for c in choice.scores] == sorted(grid)
    best = max(_accuracies(choice))
    assert choice.score == best
    tied = [c for c in choice.scores if c.score == best]
    assert choice.loss == min(c.loss for c in tied)  # ties: the lower validation loss, not the stronger penalty
    assert choice.scores[0].score < best  # C=1e-5 is near chance here: the grid matters
    cold = fit_logistic(train, train_labels, 3, choice.penalty, tolerance=1e-9)
    np.testing.assert_allclose(choice.model.probabilities(val).numpy(), cold.probabilities(val).numpy(), atol=1e-5)


def test_a_flat_start_does_not_end_the_penalty_path():
    """Few labels: the strongest penalties tie near chance; patience starts counting at the first rise (counting
    from the start stopped this path after C=1e-4, at 42% validation accuracy)."""
    train, train_labels = _blobs(30, 8, 3, seed=0)
    val, val_labels = _blobs(12, 8, 3, seed=10)
    grid = [10.0 ** e for e in range(-7, 2)]
    full = _path(train, train_labels, val, val_labels, grid)
    flat = _accuracies(full)[:4]
    assert len(set(flat)) == 1 and full.score > flat[0]  # a flat start, then a rise
    stopped = _path(train, train_labels, val, val_labels, grid, patience=3)
    assert stopped.score == full.score and stopped.penalty == full.penalty


def test_the_penalty_path_stops_after_patience_values_that_did_not_become_the_choice():
    train, train_labels = _blobs(300, 8, 3, seed=2)
    val, val_labels = _blobs(300, 8, 3, seed=3)
    grid = [10.0 ** e for e in range(-6, 6)]
    full = _path(train, train_labels, val, val_labels, grid)
    stopped = _path(train, train_labels, val, val_labels, grid, patience=2)
    expected, since, risen, best = len(grid), 0, False, None
    for index, candidate in enumerate(full.scores):  # written out: a new best (score, then loss) resets the count,
        if best is None or better(candidate, best):  # which starts once the score rose above the first C's
            risen = risen or (best is not None and candidate.score > full.scores[0].score)
            best, since = candidate, 0
        elif risen:
            since += 1
        if since == 2:
            expected = index + 1
            break
    assert len(stopped.scores) == expected < len(grid)
    assert stopped.scores == full.scores[:expected]
    if full.scores.index(next(c for c in full.scores if c.value == full.penalty)) < expected:
        assert stopped.penalty == full.penalty


def test_equal_scores_go_to_the_lower_loss_then_to_the_middle_value():
    assert choose([Scored(1e-6, 0.5, 2.30), Scored(1e-3, 0.5, 1.1), Scored(1.0, 0.5, 1.9)]) == 1
    assert choose([Scored(1e-6, 0.5, 2.3), Scored(1e-3, 0.6, 1.9), Scored(1.0, 0.6, 1.2)]) == 2
    assert choose([Scored(k, 0.5, 0.7) for k in (5, 10, 20, 50)]) == 1  # all tied: the (lower) middle k
    assert choose([Scored(k, 0.5, 0.7) for k in (5, 10, 20)]) == 1


def test_a_tie_on_validation_accuracy_is_not_won_by_the_strongest_penalty():
    """One validation image per class: several C values score the same; the stronger penalties' near-uniform
    probabilities lose on validation loss."""
    train, train_labels = _blobs(30, 8, 3, seed=0)
    val, val_labels = _blobs(3, 8, 3, seed=11)
    grid = [10.0 ** e for e in range(-6, 3)]
    choice = _path(train, train_labels, val, val_labels, grid)
    top = [c for c in choice.scores if c.score == choice.score]
    assert len(top) > 1 and choice.penalty != min(c.value for c in top)
    assert choice.loss == min(c.loss for c in top)


def test_a_penalty_with_non_finite_weights_is_skipped_and_listed():
    train, train_labels = _blobs(60, 8, 3, seed=0)
    val, val_labels = _blobs(30, 8, 3, seed=1)
    choice = _path(train, train_labels, val, val_labels, [1e-200, 1.0])
    assert choice.diverged == [1e-200] and choice.penalty == 1.0
    assert [c.value for c in choice.scores] == [1.0] and torch.isfinite(choice.model.weight).all()
    with pytest.raises(PathDiverged):
        _path(train, train_labels, val, val_labels, [1e-300, 1e-200])


def test_balanced_accuracy_is_the_mean_recall_of_the_classes_present():
    scores = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 0, 1])
    assert held_out_score(scores, labels, "acc") == 1.0
    predict_zero = torch.tensor([[1.0, 0.0]] * 4)
    assert held_out_score(predict_zero, labels, "acc") == 0.75
    assert held_out_score(predict_zero, labels, "balanced_acc") == 0.5


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
    (["downstream=linear", "downstream.penalty_grid=[1e-200]"], "outside [1e-12, 1e+12]"),
    (["downstream=linear", "downstream.cv_folds=1"], "downstream.cv_folds=1"),
    (["downstream=knn", "downstream.select=first"], "downstream.select='first' unknown"),
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
