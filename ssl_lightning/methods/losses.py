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
