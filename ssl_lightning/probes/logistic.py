"""L2-regularised multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

The penalty is scikit-learn's `LogisticRegression(C=...)`: the fit minimises
`C * sum_i cross_entropy(W x_i + b, y_i) + 0.5 * ||W||^2` with the intercept `b` unpenalised, so a C chosen
here means the same as in scikit-learn (and in Kornblith et al. 2019 / SimCLR's linear evaluation). The
objective is divided by `C * n` before L-BFGS sees it (same minimiser, gradients of order one for every C).
Penalties are fitted from the strongest (smallest C) to the weakest, each fit starting from the previous
solution (warm start), and the one with the best accuracy on the validation selection is kept. With `patience`
the path stops after that many penalties in a row without a better validation accuracy (counted once the accuracy
has risen above the first penalty's, so a flat start does not end the path): the weakly regularised
end of the grid costs the most L-BFGS iterations and, once validation accuracy has stopped rising, would not be
chosen unless accuracy rose again after `patience` values (ties go to the smaller C anyway).
L-BFGS stops when the largest gradient entry of the scaled objective is below `TOLERANCE` (scikit-learn's lbfgs
default is 1e-4 on the same scaling), after `max_iter` iterations, or when the loss stops changing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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
                 start: LogisticModel | None = None, max_iter: int = 1000,
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


@dataclass
class PenaltyChoice:
    model: LogisticModel  # fitted with the chosen penalty
    val_acc: float
    scores: list[tuple[float, float]]  # (C, validation accuracy) for every penalty tried, in fitting order


def select_penalty(train: torch.Tensor, train_labels: torch.Tensor, val: torch.Tensor, val_labels: torch.Tensor,
                   num_classes: int, grid: Sequence[float], max_iter: int = 1000,
                   tolerance: float = TOLERANCE, patience: int | None = None) -> PenaltyChoice:
    """Fit the grid's C values (smallest first, warm-started) and keep the best on validation accuracy; ties go to
    the smaller C (the stronger penalty). `patience`: stop after that many C values without a better one, counted
    from the first rise: with few validation images (10 at 5 labels per class) the strongest penalties often tie,
    and counting those stopped the path before any useful C was fitted."""
    if not grid:
        raise ValueError("the penalty grid is empty")
    best: PenaltyChoice | None = None
    previous: LogisticModel | None = None
    scores: list[tuple[float, float]] = []
    since_best = 0
    risen = False  # patience counts only once validation accuracy has risen above the first penalty's
    for penalty in sorted(float(c) for c in grid):
        if patience is not None and since_best >= patience:
            break
        model = fit_logistic(train, train_labels, num_classes, penalty, previous, max_iter, tolerance)
        val_acc = accuracy(model.logits(val), val_labels)
        scores.append((penalty, val_acc))
        if best is None or val_acc > best.val_acc:
            risen = best is not None
            best, since_best = PenaltyChoice(model, val_acc, scores), 0
        elif risen:
            since_best += 1
        previous = model
    assert best is not None
    return best
