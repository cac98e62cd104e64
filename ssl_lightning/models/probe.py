"""Encoders cut after one of their stages, so a probe can read intermediate features.

RotNet's own evaluation probes an intermediate block (its last-layer features are specific to rotation):
`downstream.probe_layer=k` feeds the head with the globally pooled output of stage k. A timm ViT's stages are its
transformer blocks (block k's patch tokens, final norm applied, averaged); another timm model's are the stages
timm reports in `feature_info`.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import Encoder


def _block_channels(block: nn.Module) -> int:
    if isinstance(block, Bottleneck):
        return block.conv3.out_channels
    if isinstance(block, BasicBlock):
        return block.conv2.out_channels
    raise TypeError(f"not a residual block: {type(block).__name__}")


def _stages(body: nn.Module) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """(stem modules, stages), each stage a list of residual blocks, for both of our encoder bodies."""
    if isinstance(body, nn.Sequential):  # the compact ResNet: stem, blocks, pool, flatten
        modules = list(body.children())
        stem = [m for m in modules[:3]]
        blocks = [m for m in modules if isinstance(m, BasicBlock | Bottleneck)]
        stages: list[list[nn.Module]] = []
        for block in blocks:  # a stage starts where the channel count changes
            if not stages or _block_channels(block) != _block_channels(stages[-1][-1]):
                stages.append([])
            stages[-1].append(block)
        return stem, stages
    stem = [body.conv1, body.bn1, body.relu, body.maxpool]  # torchvision ResNet
    return stem, [list(getattr(body, f"layer{i}").children()) for i in range(1, 5)]


def _is_timm(encoder: Encoder) -> bool:
    return encoder.arch.startswith("timm:") or hasattr(encoder.body, "forward_intermediates")


def _timm_stages(body: nn.Module) -> list[int]:
    """Feature size of each cut point of a timm model: ViT blocks, else feature_info stages."""
    if hasattr(body, "blocks") and hasattr(body, "patch_embed"):
        return [int(body.num_features)] * len(body.blocks)
    return [int(info["num_chs"]) for info in getattr(body, "feature_info", [])]


class TimmIntermediate(nn.Module):
    """A timm model's output after cut point `index` (0-based), globally averaged to a vector."""

    def __init__(self, model: nn.Module, index: int):
        super().__init__()
        self.model, self.index = model, index

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        kwargs = {"norm": True} if hasattr(self.model, "patch_embed") else {}
        features = self.model.forward_intermediates(images, indices=[self.index], intermediates_only=True,
                                                    **kwargs)[0]
        return features.mean(dim=(2, 3)) if features.dim() == 4 else features.mean(dim=1)


def stage_count(encoder: Encoder) -> int:
    if _is_timm(encoder):
        return len(_timm_stages(encoder.body))
    return len(_stages(encoder.body)[1])


def truncated(encoder: Encoder, stage: int) -> Encoder:
    """The encoder up to and including `stage` (1-based), globally pooled; shares the encoder's modules."""
    count = stage_count(encoder)
    if not 1 <= stage <= count:
        raise UserError(f"downstream.probe_layer={stage} is out of range: {encoder.arch} has stages 1..{count}")
    if stage == count:
        return encoder
    name = f"{encoder.arch}[:stage{stage}]"
    if _is_timm(encoder):
        return Encoder(TimmIntermediate(encoder.body, stage - 1), _timm_stages(encoder.body)[stage - 1], name,
                       encoder.in_channels, encoder.contract)
    stem, stages = _stages(encoder.body)
    kept = [*stem, *(block for blocks in stages[:stage] for block in blocks)]
    body = nn.Sequential(*kept, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Encoder(body, _block_channels(stages[stage - 1][-1]), name, encoder.in_channels, encoder.contract)
