"""Encoders that map 1- or 3-channel images to a feature vector (`backbone.feature_dim`).

Every caller feeds an encoder the suite's input scale, [-1, 1] (data.augment.standardize). Weights trained
elsewhere expect their own: an encoder carries an `InputContract` (models/input_contract.py) that turns the
suite's images into what its weights were trained on (ImageNet mean/std, a larger size, grey repeated to RGB);
the default contract is the identity, so random-init encoders compute exactly what they always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ssl_lightning.errors import UserError
from ssl_lightning.models.input_contract import IDENTITY, InputAdapter, InputContract
from ssl_lightning.schema_fields import BOTH, setting

STEMS = ("auto", "cifar", "imagenet")
AUTO = "auto"


@dataclass(frozen=True)
class BackboneConfig:
    """The `backbone:` section (conf/backbone/<name>.yaml presets)."""

    name: str = setting("compact", "compact|resnet18|resnet50|timm", "the encoder architecture", BOTH)
    stem: str = setting("auto", "|".join(STEMS), "first layers: cifar (3x3 stride 1, no max-pool) | imagenet | auto "
                        "(cifar up to 96 px; loaded weights: their own stem)", BOTH)
    width: int = setting(16, ">=1", "compact: channels of the first stage", BOTH)
    blocks: int = setting(1, ">=1", "compact: residual blocks per stage", BOTH)
    stem_stride: int = setting(2, ">=1", "compact: 2 halves the resolution first, the main saving on 2 CPU cores",
                               BOTH)
    init: str = setting("random", "", "random | torchvision | path to a state dict, .safetensors file or timm "
                        "model folder", BOTH)
    discard_loaded_stem: bool = setting(False, "", "true: a stem other than the loaded weights' replaces their "
                                        "first convolution by a random one", BOTH)
    input_size: Any = setting(AUTO, "", "side images are resized to before the encoder: auto = kept, except loaded "
                              "ImageNet-stem ResNet weights (at least 64 px) and loaded ViT weights (their size)",
                              BOTH)
    normalize: str = setting(AUTO, "auto|imagenet|minus_one_to_one", "input scaling: auto = the weights' own "
                             "(ImageNet mean/std for torchvision, a timm folder's config.json); minus_one_to_one = "
                             "the suite's scale", BOTH)
    model: str | None = setting(None, "", "backbone=timm: the timm model name, e.g. vit_small_patch16_224", BOTH)
    patch_size: Any = setting(AUTO, "", "backbone=timm ViTs: auto = 4 up to 32 px, 8 up to 96 px, else 16 (or the "
                              "weights')", BOTH)
    kwargs: Any = setting({}, "", "backbone=timm: more timm.create_model arguments, e.g. {depth: 2, embed_dim: 48}",
                          BOTH)

    def __post_init__(self) -> None:
        """kwargs as sorted (name, value) pairs: hashable, so configs can key caches."""
        items = self.kwargs.items() if isinstance(self.kwargs, dict) else (self.kwargs or ())
        object.__setattr__(self, "kwargs", tuple(sorted((str(k), v) for k, v in items)))


class Encoder(nn.Module):
    """A backbone with its classification layer removed; `feature_dim` is the size of its output.

    `arch` is the backbone's name; `name` adds the input contract when it is not the identity, so stored
    features of one set of weights under two contracts never share a feature-store entry.
    """

    def __init__(self, body: nn.Module, feature_dim: int, name: str, in_channels: int,
                 contract: InputContract = IDENTITY):
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.arch = name
        self.in_channels = in_channels
        self.contract = contract
        self.adapter = InputAdapter(contract)  # buffers not persistent: state dicts are the body's alone

    @property
    def name(self) -> str:
        return self.arch if self.contract.is_identity() else f"{self.arch}[{self.contract.tag()}]"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.adapter(images))


def _compact_resnet(in_channels: int, width: int, blocks: int, stem_stride: int) -> nn.Sequential:
    """Three stages of BasicBlocks (width, 2w, 4w) after a 3x3 stem, global pooling: sized for 2 CPU cores.

    Measured on 2 cores, 28 px grey input, batch 512 (train step): width 16 with stem stride 2 runs
    about 3,200 samples/s, stride 1 about 900/s, width 32 stride 2 about 1,200/s.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    channels = width
    for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            downsample = None
            if stride != 1 or channels != out_channels:
                downsample = nn.Sequential(nn.Conv2d(channels, out_channels, 1, stride, bias=False),
                                           nn.BatchNorm2d(out_channels))
            layers.append(BasicBlock(channels, out_channels, stride, downsample))
            channels = out_channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def _torchvision_resnet(name: str, in_channels: int, cifar_stem: bool) -> tuple[nn.Module, int]:
    model = {"resnet18": resnet18, "resnet50": resnet50}[name](weights=None)
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    feature_dim = model.fc.in_features
    model.fc = nn.Identity()
    return model, feature_dim


RESNETS = ("resnet18", "resnet50")
BACKBONES = ("compact", *RESNETS, "timm")


def check_config(config: BackboneConfig) -> None:
    """The backbone's own values (the weights' are checked where they are read, models/init.py)."""
    if config.name not in BACKBONES:
        raise UserError(f"unknown backbone {config.name!r}; valid: {', '.join(BACKBONES)} (backbone=<name>)")
    if config.stem not in STEMS:
        raise UserError(f"backbone.stem={config.stem!r} is not one of {', '.join(STEMS)}")
    if not isinstance(config.discard_loaded_stem, bool):
        raise UserError(f"backbone.discard_loaded_stem={config.discard_loaded_stem!r} must be true or false")
    for key in ("input_size", "patch_size"):
        value = getattr(config, key)
        if value != AUTO and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"backbone.{key}={value!r} must be auto or a positive number of pixels")
    if config.normalize not in (AUTO, "imagenet", "minus_one_to_one"):
        raise UserError(f"backbone.normalize={config.normalize!r} is not one of auto, imagenet, minus_one_to_one")
    if config.name != "timm" and (config.model is not None or config.kwargs or config.patch_size != AUTO):
        raise UserError("backbone.model, backbone.patch_size and backbone.kwargs are for backbone=timm, not "
                        f"backbone={config.name}")


def cifar_stem_for(config: BackboneConfig, image_size: int) -> bool:
    """Today's rule for an encoder without loaded weights: the CIFAR stem (3x3 stride 1, no max-pool) <= 96 px."""
    return config.stem == "cifar" or (config.stem == AUTO and image_size <= 96)


def build_encoder(config: BackboneConfig, in_channels: int, image_size: int, cifar_stem: bool | None = None,
                  contract: InputContract = IDENTITY) -> Encoder:
    """Build the named encoder; the CIFAR stem (3x3 stride 1, no max-pool) is chosen for images <= 96 px unless
    `cifar_stem` says otherwise (loaded weights bring their own, models/init.py). `in_channels` is what the body
    sees (after the contract's channel repeat)."""
    check_config(config)
    if config.name == "timm":
        from ssl_lightning.models.timm_backbone import build_timm

        return build_timm(config, in_channels, image_size, contract)
    if config.name == "compact":
        body = _compact_resnet(in_channels, config.width, config.blocks, config.stem_stride)
        return Encoder(body, 4 * config.width, config.name, in_channels, contract)
    cifar = cifar_stem_for(config, image_size) if cifar_stem is None else cifar_stem
    body, feature_dim = _torchvision_resnet(config.name, in_channels, cifar)
    return Encoder(body, feature_dim, config.name, in_channels, contract)


def check_backbone(experiment: str, config: BackboneConfig) -> None:
    """The backbone section's values, and `+experiment=pretrained`'s need for weights, before anything loads."""
    from ssl_lightning.models.encoder_state import check_init_value

    check_config(config)
    check_init_value(config.init)
    if experiment == "pretrained" and config.init == "random":
        raise UserError("+experiment=pretrained probes given weights: add backbone.init=torchvision (backbone=resnet18|"
                        "resnet50) or backbone.init=<weights file or model folder>")
