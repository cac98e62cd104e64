"""MoCo v2 (Chen et al. 2020; MoCo: He et al., CVPR 2020): a query encoder contrasts each image's key from a
momentum key encoder against a queue of earlier keys.

Both views serve as queries (the symmetrised loss of MoCo v2+/v3); the keys of both views join the queue after
the optimizer step. Under DDP the queue is filled with the keys of all processes (all_gather), so every process
keeps the same queue. The key encoder is an EMA copy (not in the optimizer). Like any single-device MoCo there is
no shuffled BatchNorm; `trainer.sync_batchnorm` does not replace it either (see docs/guide.md, Pretext methods).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssl_lightning.data.augment import standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import moco_loss
from ssl_lightning.methods.momentum import cosine_momentum, ema_update, frozen_copy
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodSpec, register
from ssl_lightning.methods.views import ViewParams, two_views, view_settings
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import mlp
from ssl_lightning.schema_fields import PRETEXT, setting


@dataclass(frozen=True)
class MoCoParams(ViewParams):
    """`moco:` section (conf/experiment/moco.yaml). MoCo v2 blurs both views and does not solarise."""

    blur_p1: float = setting(0.5, "[0, 1]", "Gaussian blur probability, view 1 (MoCo v2: 0.5 on both)", PRETEXT)
    blur_p2: float = setting(0.5, "[0, 1]", "Gaussian blur probability, view 2", PRETEXT)
    solarize_p2: float = setting(0.0, "[0, 1]", "solarisation probability, view 2 (MoCo v2: none)", PRETEXT)
    temperature: float = setting(0.2, ">0", "InfoNCE temperature", PRETEXT)
    queue_size: int = setting(4096, ">=1", "negatives in the queue (paper: 65536)", PRETEXT)
    proj_hidden_dim: int = setting(512, ">=1", "projector hidden width (paper: 2048)", PRETEXT)
    proj_dim: int = setting(128, ">=1", "projector output (paper: 128)", PRETEXT)
    base_momentum: float = setting(0.99, "[0, 1]", "key encoder EMA, cosine schedule to 1 (v2: 0.999 constant)",
                                   PRETEXT)


class MoCoPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, params: MoCoParams = MoCoParams()):
        super().__init__(encoder, optim, epochs)
        self.params, self.views = params, view_settings(params)
        self.projector = mlp(encoder.feature_dim, params.proj_hidden_dim, params.proj_dim)
        self.key_encoder = frozen_copy(encoder)
        self.key_projector = frozen_copy(self.projector)
        # The queue and its write position are buffers: saved in checkpoints, so a resumed run continues it.
        self.register_buffer("queue", F.normalize(torch.randn(params.queue_size, params.proj_dim), dim=1))
        self.register_buffer("queue_position", torch.zeros((), dtype=torch.long))
        self.momentum = params.base_momentum
        self._pending_keys: torch.Tensor | None = None

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        views = standardize(torch.cat(two_views(images, self.views, **augment_options(self))))
        q1, q2 = self.projector(self.encoder(views)).chunk(2)
        with torch.no_grad():
            keys = F.normalize(self.key_projector(self.key_encoder(views)), dim=1)
        k1, k2 = keys.chunk(2)
        loss1, accuracy1 = moco_loss(q1, k2, self.queue, self.params.temperature)
        loss2, accuracy2 = moco_loss(q2, k1, self.queue, self.params.temperature)
        if self.training:
            self._pending_keys = keys
        return (loss1 + loss2) / 2, (accuracy1 + accuracy2) / 2

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys at the ring position (wrapping around), oldest keys overwritten first."""
        size = len(self.queue)
        keys = keys[-size:]
        slots = (self.queue_position + torch.arange(len(keys), device=keys.device)) % size
        self.queue[slots] = keys.to(self.queue.dtype)
        self.queue_position.copy_((self.queue_position + len(keys)) % size)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.momentum = cosine_momentum(self.params.base_momentum, self.global_step, self.total_steps)
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)
        if self._pending_keys is not None:
            keys = self._pending_keys
            if self.world_size > 1:
                keys = self.gather_rows(keys, with_gradients=False)  # every process enqueues the same keys
            self.enqueue(keys)
            self._pending_keys = None


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: MoCoParams) -> MoCoPretext:
    return MoCoPretext(encoder, optim, epochs, params)


register(MethodSpec("moco", "MoCo v2", "moco", MoCoParams, build, 11, "Chen et al., arXiv 2003.04297 (MoCo v2)"))
