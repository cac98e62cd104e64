"""Loss functions as plain functions (solo-learn style), testable without a LightningModule."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, gather: Gather | None = None,
            rank: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's NT-Xent loss and contrastive top-1 accuracy for two views (N x D each) of this process.

    `gather` (all processes' rows, concatenated in rank order, with gradients) makes every local row
    contrast against the global batch of 2N x world_size candidates; averaging the per-process losses
    then equals the single-process loss on the global batch.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    all1, all2 = (gather(z1), gather(z2)) if gather is not None else (z1, z2)
    global_n = all1.shape[0]
    queries = torch.cat([z1, z2])
    candidates = torch.cat([all1, all2])
    logits = queries @ candidates.T / temperature
    local = torch.arange(n, device=z1.device) + rank * n
    self_index = torch.cat([local, local + global_n])
    positive_index = torch.cat([local + global_n, local])
    rows = torch.arange(2 * n, device=z1.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, self_index] = True
    logits = logits.masked_fill(self_mask, float("-inf"))
    loss = F.cross_entropy(logits, positive_index)
    accuracy = (logits.argmax(dim=1) == positive_index).float().mean()
    return loss, accuracy


def matching_accuracy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Share of rows of `a` whose most cosine-similar row of `b` is their own pair (a label-free view match)."""
    similarity = F.normalize(a.detach(), dim=1) @ F.normalize(b.detach(), dim=1).T
    return (similarity.argmax(dim=1) == torch.arange(len(a), device=a.device)).float().mean()


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL (Grill et al. 2020): 2 - 2 cos(prediction, target), batch mean; the target gets no gradient."""
    cosine = (F.normalize(prediction, dim=1) * F.normalize(target.detach(), dim=1)).sum(dim=1)
    return (2 - 2 * cosine).mean()


def moco_loss(queries: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MoCo (He et al. 2020, v2 Chen et al. 2020): InfoNCE of each query against its key (positive) and the queue
    of earlier keys (negatives), on L2-normalised vectors; also the top-1 accuracy of picking the positive."""
    queries, keys = F.normalize(queries, dim=1), F.normalize(keys.detach(), dim=1)
    positive = (queries * keys).sum(dim=1, keepdim=True)
    negative = queries @ F.normalize(queue.detach(), dim=1).T
    logits = torch.cat([positive, negative], dim=1) / temperature
    labels = torch.zeros(len(queries), dtype=torch.long, device=queries.device)
    return F.cross_entropy(logits, labels), (logits.argmax(dim=1) == 0).float().mean()


def dino_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], center: torch.Tensor,
              student_temperature: float, teacher_temperature: float) -> torch.Tensor:
    """DINO (Caron et al. 2021): cross-entropy between the centred, sharpened teacher distribution of each global
    view and the student distribution of every other view (global and local), averaged over those pairs.

    `student`: the outputs (B x K) of all views, the global ones first in the same order as `teacher`."""
    targets = [F.softmax((t.detach() - center) / teacher_temperature, dim=1) for t in teacher]
    log_probs = [F.log_softmax(s / student_temperature, dim=1) for s in student]
    total, pairs = student[0].new_zeros(()), 0
    for t_index, target in enumerate(targets):
        for s_index, log_prob in enumerate(log_probs):
            if s_index == t_index:
                continue  # the same view seen by both networks is not a pair
            total = total + (-target * log_prob).sum(dim=1).mean()
            pairs += 1
    return total / pairs
