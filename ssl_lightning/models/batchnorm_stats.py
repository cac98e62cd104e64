"""BatchNorm running statistics re-estimated on data, for a random encoder that is probed linearly.

A freshly initialised encoder keeps BatchNorm's initial statistics (mean 0, variance 1): its features are
then nearly constant and a linear probe measures feature scale, not the encoder. Re-estimating the
statistics on the training pool (no labels used) gives the random-features floor its fair chance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ssl_lightning.data.augment import standardize, to_unit_float
from ssl_lightning.data.mapped_images import LazyImages, take


@torch.no_grad()
def reestimate_batchnorm(encoder: nn.Module, images: torch.Tensor | LazyImages, indices: np.ndarray,
                         batch_size: int = 512,
                         max_images: int = 10_000, seed: int = 0) -> int:
    """Reset every BatchNorm's statistics and set them to the cumulative average over (a seeded sample of)
    `images[indices]`; returns how many images were used. The encoder's mode is restored afterwards."""
    norms = [m for m in encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(indices) == 0:
        return 0
    chosen = np.random.default_rng(seed).permutation(indices)[:max_images]
    momenta = [m.momentum for m in norms]
    was_training = encoder.training
    device = next(encoder.parameters()).device
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch weighs the same
    encoder.train()
    try:
        for start in range(0, len(chosen), batch_size):
            rows = torch.as_tensor(chosen[start : start + batch_size], dtype=torch.long)
            encoder(standardize(to_unit_float(take(images, rows).to(device))))
    finally:
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        encoder.train(was_training)
    return len(chosen)
