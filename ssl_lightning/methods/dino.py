"""DINO (Caron et al., ICCV 2021): self-distillation without labels, a student matches a momentum teacher.

Multi-crop: 2 global crops (scale 0.4-1, full size) and `local_crops` local crops (scale 0.05-0.4, resized to
96/224 of the image side), all drawn batched on the device. The teacher (an EMA copy, not in the optimizer) sees
the global crops only; its outputs are centred (centre = EMA with momentum 0.9 of the mean teacher output over
all processes' batches) and sharpened (temperature warming up from 0.04 to 0.07), the student's are softened
with temperature 0.1. The downstream stage receives the teacher's encoder, the one the paper evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssl_lightning.data.augment import simclr_view, standardize
from ssl_lightning.data.augment_streams import augment_options
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.losses import dino_loss
from ssl_lightning.methods.momentum import cosine_momentum, ema_update, frozen_copy
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodParams, MethodSpec, register, require
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.schema_fields import PRETEXT, setting


@dataclass(frozen=True)
class DINOParams(MethodParams):
    """`dino:` section (conf/experiment/dino.yaml)."""

    out_dim: int = setting(1024, ">=1", "prototypes (paper: 65,536)", PRETEXT)
    hidden_dim: int = setting(512, ">=1", "head hidden width (paper: 2048)", PRETEXT)
    bottleneck_dim: int = setting(128, ">=1", "head bottleneck (paper: 256)", PRETEXT)
    local_crops: int = setting(6, ">=0", "local crops per image (paper: 10, 6 in most ablations)", PRETEXT)
    local_size_fraction: float = setting(0.43, ">0", "local crop side / image side (96 / 224)", PRETEXT)
    global_crop_min_scale: float = setting(0.4, "(0, 1]", "global crops: smallest share of the image", PRETEXT)
    local_crop_max_scale: float = setting(0.4, "(0, 1]", "local crops: largest share of the image", PRETEXT)
    local_crop_min_scale: float = setting(0.05, "(0, 1]", "local crops: smallest share (<= local_crop_max_scale)",
                                          PRETEXT)
    student_temperature: float = setting(0.1, ">0", "student softmax temperature", PRETEXT)
    teacher_temperature: float = setting(0.07, ">0", "teacher temperature after the warm-up", PRETEXT)
    warmup_teacher_temperature: float = setting(0.04, ">0", "teacher temperature at the start", PRETEXT)
    teacher_temperature_warmup: float = setting(0.3, "[0, 1]", "share of the training steps the teacher "
                                                "temperature warms up over (paper: 30 of 100-300 epochs)", PRETEXT)
    center_momentum: float = setting(0.9, "[0, 1]", "EMA momentum of the teacher output's centre", PRETEXT)
    base_momentum: float = setting(0.996, "[0, 1]", "teacher EMA, cosine schedule to 1", PRETEXT)
    jitter_strength: float = setting(0.5, ">=0", "colour jitter strength", PRETEXT)
    grayscale_p: float = setting(0.2, "[0, 1]", "probability of a grey crop", PRETEXT)
    evaluate_teacher: bool = setting(True, "", "hand the teacher's encoder to the downstream stage, as the paper "
                                     "evaluates", PRETEXT)

    def validate(self) -> None:
        super().validate()
        require(self.local_crop_min_scale <= self.local_crop_max_scale, "local_crop_min_scale",
                self.local_crop_min_scale, "must be in (0, local_crop_max_scale]")


class DINOHead(nn.Module):
    """3-layer MLP (GELU) -> L2-normalised bottleneck -> weight-normalised linear layer with unit norm rows."""

    def __init__(self, in_dim: int, hidden_dim: int, bottleneck_dim: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim),
                                 nn.GELU(), nn.Linear(hidden_dim, bottleneck_dim))
        self.prototypes = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(features), dim=1) @ F.normalize(self.prototypes, dim=1).T


def teacher_temperature(params: DINOParams, step: int, total_steps: int) -> float:
    """Linear warm-up from `warmup_teacher_temperature` to `teacher_temperature`, then constant."""
    warmup = params.teacher_temperature_warmup * total_steps
    if step >= warmup:
        return params.teacher_temperature
    share = step / warmup
    return params.warmup_teacher_temperature + share * (params.teacher_temperature - params.warmup_teacher_temperature)


class DINOPretext(PretextMethod):
    def __init__(self, encoder: Encoder, optim: OptimConfig, epochs: int, params: DINOParams = DINOParams()):
        super().__init__(encoder, optim, epochs)
        self.params = params
        self.head = DINOHead(encoder.feature_dim, params.hidden_dim, params.bottleneck_dim, params.out_dim)
        self.teacher_encoder = frozen_copy(encoder)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, params.out_dim))
        self.momentum = params.base_momentum
        self._pending_center: torch.Tensor | None = None

    def crops(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """2 global crops (blur p 1.0 / 0.1, solarisation p 0 / 0.2) and the local crops (blur p 0.5)."""
        p, size, options = self.params, images.shape[-1], augment_options(self)
        common = (p.jitter_strength,)
        global_crops = [simclr_view(images, *common, p.global_crop_min_scale, p.grayscale_p, blur_p=blur,
                                    solarize_p=solarize, **options) for blur, solarize in ((1.0, 0.0), (0.1, 0.2))]
        local_side = max(8, round(size * p.local_size_fraction))
        local_crops = [simclr_view(images, *common, p.local_crop_min_scale, p.grayscale_p, blur_p=0.5,
                                   crop_max_scale=p.local_crop_max_scale, out_size=(local_side, local_side),
                                   **options)
                       for _ in range(p.local_crops)]
        return global_crops, local_crops

    def pretext_step(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        global_crops, local_crops = self.crops(images)
        batch = len(images)
        globals_ = standardize(torch.cat(global_crops))
        student = list(self.head(self.encoder(globals_)).split(batch))
        if local_crops:  # one forward for all local crops (same size), batched like the global ones
            student += list(self.head(self.encoder(standardize(torch.cat(local_crops)))).split(batch))
        with torch.no_grad():
            teacher_out = self.teacher_head(self.teacher_encoder(globals_))
        teacher = list(teacher_out.split(batch))
        temperature = teacher_temperature(self.params, self.global_step, self.total_steps)
        loss = dino_loss(student, teacher, self.center, self.params.student_temperature, temperature)
        if self.training:
            self._pending_center = teacher_out.mean(dim=0, keepdim=True)
        agreement = ((student[0].argmax(dim=1) == teacher[1].argmax(dim=1)).float().mean()
                     + (student[1].argmax(dim=1) == teacher[0].argmax(dim=1)).float().mean()) / 2
        return loss, agreement

    @torch.no_grad()
    def update_center(self, batch_center: torch.Tensor) -> None:
        """centre <- m * centre + (1 - m) * mean teacher output of this step's global batch (all processes)."""
        if self.world_size > 1:
            batch_center = self.gather_rows(batch_center, with_gradients=False).mean(dim=0, keepdim=True)
        momentum = self.params.center_momentum
        self.center.mul_(momentum).add_(batch_center, alpha=1 - momentum)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.momentum = cosine_momentum(self.params.base_momentum, self.global_step, self.total_steps)
        ema_update(self.teacher_encoder, self.encoder, self.momentum)
        ema_update(self.teacher_head, self.head, self.momentum)
        if self._pending_center is not None:
            self.update_center(self._pending_center)
            self._pending_center = None

    def evaluated_encoder(self) -> Encoder:
        """The teacher's encoder (parameters and BatchNorm statistics), the one the paper evaluates."""
        return self.teacher_encoder if self.params.evaluate_teacher else self.encoder


def build(encoder: Encoder, optim: OptimConfig, epochs: int, params: DINOParams) -> DINOPretext:
    return DINOPretext(encoder, optim, epochs, params)


register(MethodSpec("dino", "DINO", "dino", DINOParams, build, 13, "Caron et al., ICCV 2021"))
