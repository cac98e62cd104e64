"""L2-regularised multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

The penalty is scikit-learn's `LogisticRegression(C=...)`: the fit minimises
`C * sum_i cross_entropy(W x_i + b, y_i) + 0.5 * ||W||^2` with the intercept `b` unpenalised, so a C chosen
here means the same as in scikit-learn (and in Kornblith et al. 2019 / SimCLR's linear evaluation). The
objective is divided by `C * n` before L-BFGS sees it (same minimiser, gradients of order one for every C).
Penalties are fitted from the strongest (smallest C) to the weakest, each fit starting from the previous
solution (warm start), and the one with the best held-out score (validation, or the mean over cross-validation
folds) is kept; ties go to the lower held-out cross-entropy, then the middle C (scoring.py). With `patience`
the path stops after that many penalties in a row that did not become the choice (counted once the score
has risen above the first penalty's, so a flat start does not end the path): the weakly regularised
end of the grid costs the most L-BFGS iterations and, once the held-out score has stopped rising, would not be
chosen unless it rose again after `patience` values.
L-BFGS stops when the largest gradient entry of the scaled objective is below `TOLERANCE` (scikit-learn's lbfgs
default is 1e-4 on the same scaling), after `max_iter` iterations, or when the loss stops changing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ssl_lightning.probes.config import PROBE_DEFAULTS
from ssl_lightning.probes.scoring import TIE, Scored, better, choose, cross_entropy, held_out_score

TOLERANCE = 1e-5


@dataclass(frozen=True)
class Standardizer:
    """Per-feature centring and scaling with the training features' statistics (constant features: scale 1)."""

    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, features: torch.Tensor) -> Standardizer:
        values = features.double()
        std = values.std(dim=0, unbiased=False)
        return cls(values.mean(dim=0), torch.where(std > 1e-12, std, torch.ones_like(std)))

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return (features.double() - self.mean) / self.scale


@dataclass
class LogisticModel:
    weight: torch.Tensor  # classes x features, float64
    bias: torch.Tensor  # classes, float64
    penalty: float  # scikit-learn's C
    iterations: int  # L-BFGS iterations of this fit

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return features.double() @ self.weight.T + self.bias

    def probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(features), dim=1)


def fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, penalty: float,
                 start: LogisticModel | None = None, max_iter: int = PROBE_DEFAULTS.max_iter,
                 tolerance: float = TOLERANCE) -> LogisticModel:
    """Minimise C * sum(cross-entropy) + 0.5 ||W||^2 (float64, strong-Wolfe L-BFGS) from zero or from `start`."""
    if penalty <= 0:
        raise ValueError(f"the penalty C must be > 0, got {penalty}")
    x = features.double()
    y = labels.long().to(x.device)
    shape = (num_classes, x.shape[1])
    weight = (start.weight.clone() if start is not None else torch.zeros(shape, dtype=torch.float64, device=x.device))
    bias = start.bias.clone() if start is not None else torch.zeros(num_classes, dtype=torch.float64, device=x.device)
    ridge = 1.0 / (2.0 * penalty * len(y))
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                  tolerance_grad=tolerance, tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")

    one_hot = F.one_hot(y, num_classes).double()

    @torch.no_grad()
    def objective() -> torch.Tensor:
        """Loss and its gradient in closed form (no autograd graph: L-BFGS calls this hundreds of times)."""
        log_probabilities = torch.log_softmax(torch.addmm(bias, x, weight.T), dim=1)
        loss = -(log_probabilities * one_hot).sum() / len(y) + ridge * (weight * weight).sum()
        residual = (log_probabilities.exp() - one_hot) / len(y)
        weight.grad = residual.T @ x + (2 * ridge) * weight
        bias.grad = residual.sum(dim=0)
        return loss

    optimizer.step(objective)
    iterations = int(optimizer.state[weight].get("n_iter", 0))
    return LogisticModel(weight.detach(), bias.detach(), float(penalty), iterations)


def accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    return float((scores.argmax(dim=1).cpu() == labels.cpu()).double().mean()) if len(labels) else float("nan")


def finite(model: LogisticModel) -> bool:
    """False when L-BFGS left non-finite weights (e.g. C=1e-200: the ridge term overflows the line search)."""
    return bool(torch.isfinite(model.weight).all() and torch.isfinite(model.bias).all())


@dataclass(frozen=True)
class HeldOut:
    """One fit of the path: its training rows and the held-out rows it is scored on (features standardised)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    held: torch.Tensor
    held_labels: torch.Tensor


@dataclass
class PenaltyChoice:
    penalty: float  # the chosen C
    score: float  # its held-out score on the metric (mean over the splits)
    loss: float  # its held-out cross-entropy (mean over the splits)
    models: list[LogisticModel]  # the chosen C's model on each split (one split: fitted on the labelled rows)
    scores: list[Scored]  # every C fitted, in fitting order (diverged ones left out)
    diverged: list[float] = field(default_factory=list)  # C values whose fit gave non-finite weights or loss

    @property
    def model(self) -> LogisticModel:
        return self.models[0]


class PathDiverged(ValueError):
    """Every penalty of the grid gave non-finite weights or held-out loss."""

    def __init__(self, diverged: Sequence[float], message: str | None = None):
        self.diverged = list(diverged)
        super().__init__(message or f"every penalty C {[f'{c:g}' for c in self.diverged]} gave non-finite weights "
                         "or loss")


def _scored(model: LogisticModel, split: HeldOut, metric: str) -> tuple[float, float]:
    probabilities = model.probabilities(split.held)
    return held_out_score(probabilities, split.held_labels, metric), cross_entropy(probabilities, split.held_labels)


def select_penalty(splits: Sequence[HeldOut], num_classes: int, grid: Sequence[float], metric: str = "acc",
                   max_iter: int = PROBE_DEFAULTS.max_iter, tolerance: float = TOLERANCE,
                   patience: int | None = None) -> PenaltyChoice:
    """Fit the grid's C values (smallest first, warm-started per split) on every split, score each C by the mean
    held-out `metric` over the splits (one split: validation; several: cross-validation folds) and choose by
    scoring.choose (ties: lower held-out loss, then the middle C; never simply the strongest penalty).
    `patience`: stop after that many C values in a row that did not become the choice, counted from the first rise
    of the score above the first C's: with few held-out images (10 at 5 labels per class) the strongest penalties
    often tie, and counting those stopped the path before any useful C was fitted. A C whose fit on any split gives
    non-finite weights or loss is listed in `diverged` and skipped (the next C starts from the last finite fit);
    PathDiverged when every C did."""
    if not grid:
        raise ValueError("the penalty grid is empty")
    if not splits:
        raise ValueError("no split to fit the penalty path on")
    previous: list[LogisticModel | None] = [None] * len(splits)
    scores: list[Scored] = []
    models_by_c: list[list[LogisticModel]] = []
    diverged: list[float] = []
    best: int | None = None
    since_best, risen = 0, False
    for penalty in sorted(float(c) for c in grid):
        if patience is not None and since_best >= patience:
            break
        models = [fit_logistic(s.train, s.train_labels, num_classes, penalty, start, max_iter, tolerance)
                  for s, start in zip(splits, previous, strict=True)]
        results = [_scored(m, s, metric) for m, s in zip(models, splits, strict=True)] if all(
            finite(m) for m in models) else []
        if not results or any(len(s.held_labels) and not math.isfinite(loss)
                              for s, (_, loss) in zip(splits, results, strict=True)):
            diverged.append(penalty)
            continue
        mean_score = sum(r[0] for r in results) / len(results)
        candidate = Scored(penalty, mean_score, sum(r[1] for r in results) / len(results))
        scores.append(candidate)
        models_by_c.append(models)
        previous = list(models)
        if best is None or better(candidate, scores[best]):
            risen = risen or (best is not None and mean_score > scores[0].score + TIE)
            best, since_best = len(scores) - 1, 0
        elif risen:
            since_best += 1
    if best is None:
        raise PathDiverged(diverged)
    chosen = choose(scores)
    pick = scores[chosen]
    return PenaltyChoice(float(pick.value), pick.score, pick.loss, models_by_c[chosen], scores, diverged)
