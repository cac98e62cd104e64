"""Test metrics from predicted class probabilities: tile (image) level and, for grouped data, group level.

Every downstream protocol (fine-tune, SGD head, L-BFGS probe, k-NN) ends in one matrix of class probabilities
for the test images; this module turns it into the numbers results.json records, so that every protocol reports
the same metrics computed the same way. Definitions (as scikit-learn's, checked in tests/test_metrics.py):
- balanced accuracy: mean recall over the classes present in the labels (eva's leaderboard metric);
- macro-F1: mean F1 over the classes present in the labels or the predictions, F1 = 0 where undefined;
- group level: a group's prediction is the argmax of the mean predicted probability of its images, its label
  the majority label of its images (ties: the smaller class index); accuracy and balanced accuracy over groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix


@dataclass(frozen=True)
class ClassificationMetrics:
    acc: float
    balanced_acc: float
    macro_f1: float
    per_class_acc: list[float]  # recall per class; NaN for a class without test images
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    group_acc: float | None = None
    group_balanced_acc: float | None = None
    num_groups: int | None = None

    def as_results(self, prefix: str = "test_") -> dict[str, object]:
        """The results.json fields (group fields only for grouped data)."""
        values: dict[str, object] = {f"{prefix}acc": self.acc, f"{prefix}balanced_acc": self.balanced_acc,
                                     f"{prefix}macro_f1": self.macro_f1, f"{prefix}confusion": self.confusion}
        if self.group_acc is not None:
            values.update({f"{prefix}group_acc": self.group_acc,
                           f"{prefix}group_balanced_acc": self.group_balanced_acc,
                           f"{prefix}num_groups": self.num_groups})
        return values


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs, torchmetrics' confusion matrix as int64 numpy."""
    matrix = multiclass_confusion_matrix(predicted.long(), labels.long(), num_classes, normalize="none")
    return matrix.cpu().numpy().astype(np.int64)


def _recall_per_class(confusion: np.ndarray) -> np.ndarray:
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean recall over the classes that have at least one true image."""
    recall = _recall_per_class(confusion)
    present = ~np.isnan(recall)
    return float(recall[present].mean()) if present.any() else float("nan")


def macro_f1(confusion: np.ndarray) -> float:
    """Mean F1 over the classes seen in the labels or the predictions (F1 = 0 for a class never hit)."""
    true_positive = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    seen = (support + predicted) > 0
    if not seen.any():
        return float("nan")
    f1 = 2 * true_positive / np.maximum(support + predicted, 1)
    return float(f1[seen].mean())


def accuracy(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def group_predictions(probabilities: torch.Tensor, labels: torch.Tensor,
                      groups: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(predicted class, majority label, group id) per group, groups sorted by id."""
    ids = np.asarray(groups).astype(str)
    names, inverse = np.unique(ids, return_inverse=True)
    index = torch.as_tensor(inverse, dtype=torch.long)
    num_classes = probabilities.shape[1]
    summed = torch.zeros(len(names), num_classes, dtype=torch.float64).index_add_(0, index, probabilities.double())
    votes = torch.zeros(len(names), num_classes, dtype=torch.float64).index_add_(
        0, index, torch.nn.functional.one_hot(labels.long(), num_classes).double())
    return summed.argmax(dim=1), votes.argmax(dim=1), [str(n) for n in names]  # argmax: first max on ties


def classification_metrics(probabilities: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           groups: Sequence[str] | None = None) -> ClassificationMetrics:
    """Every test metric from an N x K matrix of class probabilities (or any scores whose argmax is the class)."""
    probabilities, labels = probabilities.detach().cpu().float(), labels.detach().cpu().long()
    confusion = confusion_matrix(probabilities.argmax(dim=1), labels, num_classes)
    recall = _recall_per_class(confusion)
    metrics = dict(acc=accuracy(confusion), balanced_acc=balanced_accuracy(confusion), macro_f1=macro_f1(confusion),
                   per_class_acc=[float(r) for r in recall], confusion=confusion.tolist())
    if groups is not None:
        if len(groups) != len(labels):
            raise ValueError(f"{len(groups)} group ids for {len(labels)} test images")
        predicted, truth, names = group_predictions(probabilities, labels, groups)
        grouped = confusion_matrix(predicted, truth, num_classes)
        metrics.update(group_acc=accuracy(grouped), group_balanced_acc=balanced_accuracy(grouped),
                       num_groups=len(names))
    return ClassificationMetrics(**metrics)
