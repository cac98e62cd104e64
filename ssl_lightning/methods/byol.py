"""BYOL (Grill et al., NeurIPS 2020): an online network with a predictor regresses a momentum target network.

Online: encoder -> projector -> predictor; target: EMA copies of encoder and projector (not in the optimizer),
updated after every optimizer step with tau from `base_momentum` to 1 on a cosine schedule. Loss 2 - 2 cos,
symmetrised over the two views. The online encoder is what the downstream stage fine-tunes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ssl_lightning.data.augment import standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import byol_loss, matching_accuracy
from ssl_lightning.methods.momentum import cosine_momentum, ema_update, frozen_copy
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodSpec, register
from ssl_lightning.methods.views import ViewParams, two_views, view_settings
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.heads import mlp
from ssl_lightning.schema_fields import PRETEXT, setting


@dataclass(frozen=True)
class BYOLParams(ViewParams):
    """`byol:` section (conf/experiment/byol.yaml)."""

    proj_hidden_dim: int = setting(512, ">=1", "projector hidden width (paper: 4096)", PRETEXT)
    proj_dim: int = setting(128, ">=1", "projector output (paper: 256)", PRETEXT)
    pred_hidden_dim: int = setting(512, ">=1", "predictor hidden width (paper: 4096)", PRETEXT)
    base_momentum: float = setting(0.996, "[0, 1]", "target EMA tau, cosine schedule to 1 over all steps", PRETEXT)


class BYOLPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, params: BYOLParams = BYOLParams()):
        super().__init__(encoder, optim, epochs)
        self.params, self.views = params, view_settings(params)
        self.projector = mlp(encoder.feature_dim, params.proj_hidden_dim, params.proj_dim)
        self.predictor = mlp(params.proj_dim, params.pred_hidden_dim, params.proj_dim)
        self.target_encoder = frozen_copy(encoder)
        self.target_projector = frozen_copy(self.projector)
        self.momentum = params.base_momentum

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        views = standardize(torch.cat(two_views(images, self.views, **augment_options(self))))
        online = self.predictor(self.projector(self.encoder(views)))
        with torch.no_grad():
            target = self.target_projector(self.target_encoder(views))
        p1, p2 = online.chunk(2)
        t1, t2 = target.chunk(2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return loss, matching_accuracy(p1, t2)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """EMA of the target after the optimizer step; tau follows the cosine schedule over all steps."""
        self.momentum = cosine_momentum(self.params.base_momentum, self.global_step, self.total_steps)
        pairs: list[tuple[nn.Module, nn.Module]] = [(self.target_encoder, self.encoder),
                                                    (self.target_projector, self.projector)]
        for target, online in pairs:
            ema_update(target, online, self.momentum)


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: BYOLParams) -> BYOLPretext:
    return BYOLPretext(encoder, optim, epochs, params)


register(MethodSpec("byol", "BYOL", "byol", BYOLParams, build, 10, "Grill et al., NeurIPS 2020"))
