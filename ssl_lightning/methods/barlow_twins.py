"""Barlow Twins (Zbontar et al., ICML 2021): make the cross-correlation of two views' embeddings the identity.

The paper trains with LARS, which ignores the loss scale; with our SGD the loss (about proj_dim at the start) is
multiplied by `scale_loss` (solo-learn's option of the same name), 1e-3 by default.
Embeddings are batch-normalised along the batch; under DDP the projections of all processes are gathered with
gradients (like SimCLR), so the normalisation and the correlation use the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssl_lightning.data.augment import standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import Gather, matching_accuracy
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodSpec, register
from ssl_lightning.methods.views import ViewParams, two_views, view_settings
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.schema_fields import PRETEXT, setting


def _batch_normalise(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """nn.BatchNorm1d(affine=False) in training mode: zero mean, unit (biased) variance along the batch."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float, gather: Gather | None = None) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021): push the cross-correlation of the batch-normalised embeddings of the two
    views to the identity; off-diagonal terms weighted by `lambd`. With `gather` (all processes' rows, with
    gradients) the statistics and the correlation are those of the global batch."""
    if gather is not None:
        z1, z2 = gather(z1), gather(z2)
    correlation = _batch_normalise(z1).T @ _batch_normalise(z2) / len(z1)
    diagonal = torch.diagonal(correlation)
    on_diagonal = (diagonal - 1).pow(2).sum()
    off_diagonal = correlation.pow(2).sum() - diagonal.pow(2).sum()
    return on_diagonal + lambd * off_diagonal


@dataclass(frozen=True)
class BarlowTwinsParams(ViewParams):
    """`barlow_twins:` section (conf/experiment/barlow_twins.yaml)."""

    proj_dim: int = setting(1024, ">=1", "width of each of the 3 projector layers (paper: 8192)", PRETEXT)
    lambd: float = setting(5e-3, ">0", "weight of the off-diagonal terms", PRETEXT)
    scale_loss: float = setting(1e-3, ">0", "loss multiplier: the paper's LARS ignores the loss scale, our SGD "
                                "(lr 0.1) does not; ~1/proj_dim keeps it stable", PRETEXT)


def projector(in_dim: int, width: int) -> nn.Sequential:
    """The paper's projector: two Linear-BN-ReLU layers and a final Linear, all `width` wide."""
    return nn.Sequential(
        nn.Linear(in_dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
        nn.Linear(width, width, bias=False),
    )


class BarlowTwinsPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int,
                 params: BarlowTwinsParams = BarlowTwinsParams()):
        super().__init__(encoder, optim, epochs)
        self.params, self.views = params, view_settings(params)
        self.projector = projector(encoder.feature_dim, params.proj_dim)

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        views = standardize(torch.cat(two_views(images, self.views, **augment_options(self))))
        z1, z2 = self.projector(self.encoder(views)).chunk(2)
        gather = (lambda z: self.gather_rows(z, with_gradients=True)) if self.gathers_in_this_step else None
        loss = barlow_twins_loss(z1, z2, self.params.lambd, gather=gather) * self.params.scale_loss
        return loss, matching_accuracy(z1, z2)


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: BarlowTwinsParams) -> BarlowTwinsPretext:
    return BarlowTwinsPretext(encoder, optim, epochs, params)


register(MethodSpec("barlow_twins", "Barlow Twins", "barlow_twins", BarlowTwinsParams, build, 12,
                    "Zbontar et al., ICML 2021"))
