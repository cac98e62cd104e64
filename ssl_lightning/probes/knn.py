"""Weighted k-nearest-neighbour classification on frozen features (DINO's `eval_knn`, solo-learn).

`metric="cosine"`: features are L2-normalised and the similarity is their dot product; `"euclidean"`: the
similarity is minus the Euclidean distance between the features as given (the stage standardises them first).
Each of the k most similar labelled images votes for its class with weight exp(similarity / T); the class
scores are the summed votes, normalised to sum to one (class probabilities for the metrics). Subtracting each
query's largest similarity before the exponential changes no normalised score and keeps exp() finite.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

METRICS = ("cosine", "euclidean")
QUERY_CHUNK = 512  # query rows per similarity block: 512 x 54,000 float32 is about 110 MB


def _prepare(features: torch.Tensor, metric: str) -> torch.Tensor:
    if metric not in METRICS:
        raise ValueError(f"unknown k-NN metric {metric!r}; valid: {', '.join(METRICS)}")
    values = features.float()
    return F.normalize(values, dim=1) if metric == "cosine" else values


def _similarity(queries: torch.Tensor, bank: torch.Tensor, metric: str) -> torch.Tensor:
    return queries @ bank.T if metric == "cosine" else -torch.cdist(queries, bank)


def knn_probabilities(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
                      ks: Sequence[int], temperature: float, metric: str = "cosine") -> dict[int, torch.Tensor]:
    """Class probabilities (queries x classes, float64, on the CPU) of the queries for every k in `ks`; one
    neighbour search at the largest k serves all of them. k larger than the bank uses the whole bank."""
    if temperature <= 0:
        raise ValueError(f"the k-NN temperature must be > 0, got {temperature}")
    if not ks or min(ks) < 1:
        raise ValueError(f"k must be >= 1, got {list(ks)}")
    bank_prepared = _prepare(bank, metric)
    labels = bank_labels.long().to(bank_prepared.device)
    largest = min(max(ks), len(bank_prepared))
    parts: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = _prepare(queries[start:start + QUERY_CHUNK].to(bank_prepared.device), metric)
        similar, index = _similarity(chunk, bank_prepared, metric).topk(largest, dim=1)  # sorted, most similar first
        votes_for = labels[index]
        weights = torch.exp((similar.double() - similar[:, :1].double()) / temperature)
        for k in ks:
            used = min(k, largest)
            scores = torch.zeros(len(chunk), num_classes, dtype=torch.float64, device=chunk.device)
            scores.scatter_add_(1, votes_for[:, :used], weights[:, :used])
            parts[k].append((scores / scores.sum(dim=1, keepdim=True)).cpu())
    empty = torch.empty(0, num_classes, dtype=torch.float64)
    return {k: torch.cat(chunks) if chunks else empty for k, chunks in parts.items()}
