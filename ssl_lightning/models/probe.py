"""Encoders cut after one of their stages, so a probe can read intermediate features.

RotNet's own evaluation probes an intermediate block (its last-layer features are specific to rotation):
`downstream.probe_layer=k` feeds the head with the globally pooled output of stage k.
"""

from __future__ import annotations

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


def stage_count(encoder: Encoder) -> int:
    return len(_stages(encoder.body)[1])


def truncated(encoder: Encoder, stage: int) -> Encoder:
    """The encoder up to and including `stage` (1-based), globally pooled; shares the encoder's modules."""
    stem, stages = _stages(encoder.body)
    if not 1 <= stage <= len(stages):
        raise UserError(f"downstream.probe_layer={stage} is out of range: {encoder.name} has stages 1..{len(stages)}")
    if stage == len(stages):
        return encoder
    kept = [*stem, *(block for blocks in stages[:stage] for block in blocks)]
    body = nn.Sequential(*kept, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Encoder(body, _block_channels(stages[stage - 1][-1]), f"{encoder.name}[:stage{stage}]",
                   encoder.in_channels)
