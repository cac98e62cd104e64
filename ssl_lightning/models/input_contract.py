"""What weights expect of their input, applied inside the encoder so every caller keeps feeding [-1, 1] images.

Every training and evaluation path of the suite standardises images to [-1, 1] (data.augment.standardize) and
hands them to `encoder(...)`. Weights trained elsewhere were trained on other inputs: torchvision's ImageNet
ResNets on ImageNet mean/std-normalised RGB at 224 px, a pathology ViT at its own size and statistics. The
contract turns the suite's images into those: back to [0, 1], grey repeated to three channels (so the loaded
first convolution is used unchanged), resized (bilinear), normalised by the weights' mean and std. The identity
contract (the default: random init, the suite's own encoders) is a no-op, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputContract:
    stem: str | None = None  # what the first layer is: cifar | imagenet | a timm patch size ("patch4"); recorded
    repeat_channels: int | None = None  # grey images repeated to this many channels (the weights' RGB conv)
    resize_to: int | None = None  # square side in pixels the images are resized to (bilinear)
    mean: tuple[float, ...] | None = None  # None: the suite's [-1, 1] scale
    std: tuple[float, ...] | None = None

    def tag(self) -> str:
        """A short text for the encoder's name (and so the feature-store key)."""
        parts = []
        if self.repeat_channels:
            parts.append(f"rgb{self.repeat_channels}")
        if self.resize_to:
            parts.append(f"{self.resize_to}px")
        if self.mean is not None:
            parts.append("mean=" + ",".join(f"{v:g}" for v in self.mean) + ";std="
                         + ",".join(f"{v:g}" for v in self.std or ()))
        return " ".join(parts) or "as-is"

    def record(self) -> dict[str, Any]:
        """results.json's `input_contract`."""
        return {"stem": self.stem, "mean": list(self.mean) if self.mean else "[-1, 1] (x / 255 * 2 - 1)",
                "std": list(self.std) if self.std else None, "resize_to": self.resize_to,
                "grey_to_rgb": "repeated to 3 channels" if self.repeat_channels else None}

    def is_identity(self) -> bool:
        return self.repeat_channels is None and self.resize_to is None and self.mean is None


IDENTITY = InputContract()


class InputAdapter(nn.Module):
    """The contract as a module: [-1, 1] images in, what the weights expect out (identity: unchanged)."""

    def __init__(self, contract: InputContract):
        super().__init__()
        self.contract = contract
        self.active = not contract.is_identity()
        mean = torch.tensor(contract.mean if contract.mean else (0.5,)).view(1, -1, 1, 1)
        std = torch.tensor(contract.std if contract.std else (0.5,)).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return images
        unit = (images + 1.0) * 0.5  # back to [0, 1], torchvision's convention before Normalize
        if self.contract.repeat_channels and unit.shape[1] == 1:
            unit = unit.expand(-1, self.contract.repeat_channels, -1, -1)
        size = self.contract.resize_to
        if size and tuple(unit.shape[-2:]) != (size, size):
            unit = F.interpolate(unit, size=(size, size), mode="bilinear", align_corners=False)
        return (unit - self.mean.to(unit.dtype)) / self.std.to(unit.dtype)
