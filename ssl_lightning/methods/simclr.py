"""SimCLR (Chen et al. 2020): two augmented views per image, MLP projector, NT-Xent.

Under DDP the projections of all processes are gathered with gradients, so each process contrasts
against the global batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ssl_lightning.data.augment import simclr_view, standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import nt_xent
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodParams, MethodSpec, register
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import mlp
from ssl_lightning.schema_fields import PRETEXT, setting


class SimCLRPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, params: SimCLRParams | None = None,
                 **changes: Any):
        """`params` (default: SimCLRParams's defaults) with `changes` of some fields, e.g. proj_dim=32."""
        super().__init__(encoder, optim, epochs)
        params = replace(params or SimCLRParams(), **changes)
        self.temperature = params.temperature
        self.jitter_strength, self.crop_min_scale = params.jitter_strength, params.crop_min_scale
        self.grayscale_p = params.grayscale_p
        self.projector = mlp(encoder.feature_dim, params.proj_hidden_dim, params.proj_dim)

    def _gather(self, z: torch.Tensor) -> torch.Tensor:
        gathered = self.all_gather(z, sync_grads=True)  # world x N x D
        return gathered.reshape(-1, z.shape[1])

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        options = augment_options(self)
        views = torch.cat([
            simclr_view(images, self.jitter_strength, self.crop_min_scale, self.grayscale_p, **options)
            for _ in range(2)
        ])
        z = self.projector(self.encoder(standardize(views)))
        z1, z2 = z.chunk(2)
        trainer = self._trainer  # None when the module is used outside a Trainer (tests, benchmarks)
        # Gather only while training: validation shards may differ by an image between ranks (no padding),
        # and all_gather needs equal shapes and equal call counts on every rank.
        distributed = trainer is not None and trainer.world_size > 1 and self.training
        gather = self._gather if distributed else None
        rank = trainer.global_rank if distributed else 0
        return nt_xent(z1, z2, self.temperature, gather=gather, rank=rank)


@dataclass(frozen=True)
class SimCLRParams(MethodParams):
    """`simclr:` section (conf/experiment/simclr.yaml)."""

    temperature: float = setting(0.5, ">0", "NT-Xent temperature (the paper's value for long runs)", PRETEXT)
    proj_dim: int = setting(64, ">=1", "projector output (paper: 128 on a 2048-d ResNet-50)", PRETEXT)
    proj_hidden_dim: int = setting(256, ">=1", "projector hidden width", PRETEXT)
    jitter_strength: float = setting(0.5, ">=0", "colour jitter strength (CIFAR recipe: 0.4/0.4/0.4/0.1, p=0.8)",
                                     PRETEXT)
    crop_min_scale: float = setting(0.08, "(0, 1]", "random resized crop: smallest share of the image", PRETEXT)
    grayscale_p: float = setting(0.2, "[0, 1]", "probability of a grey view", PRETEXT)


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: SimCLRParams) -> SimCLRPretext:
    return SimCLRPretext(encoder, optim, epochs, params)


register(MethodSpec("simclr", "SimCLR", "simclr", SimCLRParams, build, 2, "Chen et al., ICML 2020"))
