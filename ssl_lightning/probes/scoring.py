"""Held-out scores of probe candidates and the neutral rule that chooses among them.

Why a rule of its own: with a handful of held-out images many candidates score the same, and the first listed (the
strongest penalty, the smallest k) used to win every tie. Now the candidate with the best score on the monitored
metric (`acc` or `balanced_acc`) wins; among equal scores the one with the lower held-out cross-entropy (the
probabilities the candidate gives the true classes); among candidates equal on both, the middle one of the tied
values in candidate order (neither end of the grid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

SCORE_METRICS = ("acc", "balanced_acc")
MIN_PROBABILITY = 1e-12  # k-NN gives probability 0 to classes without a vote: the loss clamps it
TIE = 1e-12  # scores (means over folds) closer than this are equal


def balanced_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in `labels` (NaN without labels)."""
    labels = labels.cpu().long()
    if not len(labels):
        return float("nan")
    hits = (scores.argmax(dim=1).cpu() == labels).double()
    present = labels.unique()
    return float(torch.stack([hits[labels == c].mean() for c in present]).mean())


def held_out_score(scores: torch.Tensor, labels: torch.Tensor, metric: str) -> float:
    """Accuracy or balanced accuracy of class scores (logits or probabilities) against the labels."""
    if metric not in SCORE_METRICS:
        raise ValueError(f"unknown held-out metric {metric!r}; valid: {', '.join(SCORE_METRICS)}")
    if metric == "balanced_acc":
        return balanced_accuracy(scores, labels)
    labels = labels.cpu().long()
    return float((scores.argmax(dim=1).cpu() == labels).double().mean()) if len(labels) else float("nan")


def cross_entropy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean -log p(true class), p clamped at MIN_PROBABILITY (NaN without labels)."""
    labels = labels.cpu().long()
    if not len(labels):
        return float("nan")
    chosen = probabilities.cpu().double().gather(1, labels[:, None]).clamp_min(MIN_PROBABILITY)
    return float(-chosen.log().mean())


@dataclass(frozen=True)
class Scored:
    """One candidate's held-out result (a mean over the folds under cross-validation)."""

    value: float | int | str  # C, k or the layer
    score: float  # the monitored metric
    loss: float  # held-out cross-entropy


def better(a: Scored, b: Scored) -> bool:
    """a beats b: a higher score, or an equal score and a lower loss (NaN never beats a number)."""
    if math.isnan(a.score):
        return False
    if math.isnan(b.score) or a.score > b.score + TIE:
        return True
    if a.score < b.score - TIE:
        return False
    return not math.isnan(a.loss) and (math.isnan(b.loss) or a.loss < b.loss - TIE)


def choose(candidates: Sequence[Scored]) -> int:
    """Index of the winner by `better`; among candidates tied on score and loss, the middle one (lower middle)."""
    if not candidates:
        raise ValueError("no candidate to choose from")
    best = 0
    for index in range(1, len(candidates)):
        if better(candidates[index], candidates[best]):
            best = index
    tied = [i for i, c in enumerate(candidates) if not better(candidates[best], c) and not better(c, candidates[best])]
    return tied[(len(tied) - 1) // 2]
