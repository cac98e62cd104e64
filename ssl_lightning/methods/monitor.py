"""Label-free-comparable monitors of a pretext encoder, computed on the validation features once per epoch.

Rotation accuracy and contrastive accuracy cannot be compared with each other; these two can, across methods:
- leave-one-out k-NN accuracy (cosine similarity, k=20, majority vote) on the validation split's features:
  it needs the validation images' labels and is used for monitoring only, never for selecting anything;
- RankMe (Garrido et al., ICML 2023): the effective rank of the embedding matrix, exp of the entropy of its
  L1-normalised singular values; no labels needed, higher tends to mean better downstream accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KNN_K = 20
RANKME_EPS = 1e-7  # the paper's epsilon added to the normalised singular values


def knn_leave_one_out_accuracy(features: torch.Tensor, labels: torch.Tensor, k: int = KNN_K,
                               chunk: int = 1024) -> float:
    """Share of rows whose k nearest other rows (cosine) vote for their label; ties go to the class with the larger
    summed similarity. Rows are compared in chunks so that the N x N similarity matrix never exists at once."""
    count = len(features)
    k = min(k, count - 1)
    if k < 1:
        return float("nan")
    normalised = F.normalize(features.float(), dim=1)
    labels = labels.long()
    classes = int(labels.max()) + 1
    correct = 0
    for start in range(0, count, chunk):
        rows = normalised[start:start + chunk]
        similarity = rows @ normalised.T
        own = torch.arange(start, start + len(rows), device=features.device)
        similarity[torch.arange(len(rows)), own] = float("-inf")  # leave the row itself out
        top, index = similarity.topk(k, dim=1)
        votes = torch.zeros(len(rows), classes, dtype=torch.float64, device=features.device)
        votes.scatter_add_(1, labels[index], torch.ones_like(top, dtype=torch.float64))
        weight = torch.zeros_like(votes).scatter_add_(1, labels[index], top.double())
        # A class's summed similarity lies in [-k, k]; mapped into [0, 1) it only breaks ties between vote counts.
        predicted = (votes + (weight + k) / (2 * k + 1)).argmax(dim=1)
        correct += int((predicted == labels[start:start + len(rows)]).sum())
    return correct / count


def rankme(embeddings: torch.Tensor) -> float:
    """exp(-sum p_k log p_k), p = sigma / ||sigma||_1 + eps over the singular values sigma of the N x D matrix."""
    singular = torch.linalg.svdvals(embeddings.double())
    p = singular / singular.sum().clamp(min=1e-12) + RANKME_EPS
    return float(torch.exp(-(p * torch.log(p)).sum()))
