"""SimCLR (Chen et al. 2020): two augmented views per image, MLP projector, NT-Xent.

Under DDP the projections of all processes are gathered with gradients, so each process contrasts
against the global batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ssl_lightning.data.augment import simclr_view, standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import nt_xent
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodParams, MethodSpec, positive, probability, register, require
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import mlp


class SimCLRPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, temperature: float = 0.5,
                 proj_dim: int = 64, proj_hidden_dim: int = 256, jitter_strength: float = 0.5,
                 crop_min_scale: float = 0.08, grayscale_p: float = 0.2):
        super().__init__(encoder, optim, epochs)
        self.temperature = temperature
        self.jitter_strength, self.crop_min_scale, self.grayscale_p = jitter_strength, crop_min_scale, grayscale_p
        self.projector = mlp(encoder.feature_dim, proj_hidden_dim, proj_dim)

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

    temperature: float = 0.5
    proj_dim: int = 64
    proj_hidden_dim: int = 256
    jitter_strength: float = 0.5
    crop_min_scale: float = 0.08
    grayscale_p: float = 0.2

    def validate(self) -> None:
        positive(self, "temperature", "proj_dim", "proj_hidden_dim")
        probability(self, "grayscale_p")
        require(self.jitter_strength >= 0, "jitter_strength", self.jitter_strength, "must be >= 0")
        require(0 < self.crop_min_scale <= 1, "crop_min_scale", self.crop_min_scale, "must be in (0, 1]")


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: SimCLRParams) -> SimCLRPretext:
    return SimCLRPretext(encoder, optim, epochs, **asdict(params))


register(MethodSpec("simclr", "SimCLR", "simclr", SimCLRParams, build, 2, "Chen et al., ICML 2020"))
