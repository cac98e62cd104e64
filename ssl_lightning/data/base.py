"""The one shape every data set loader returns: decoded uint8 images ready for batched augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ssl_lightning.data.mapped_images import LazyImages

# In memory (the built-in data sets) or read from the image store through memory maps (folders).
Images = torch.Tensor | LazyImages


@dataclass
class ImageSet:
    """Decoded images as uint8 N x C x H x W (tensors, or store-backed `LazyImages`) with int64 labels.

    Loaders decode once into this form so that augmentation can run on whole batches on the device,
    instead of per-sample PIL transforms in DataLoader workers.
    """

    train_images: Images
    train_labels: torch.Tensor
    test_images: Images
    test_labels: torch.Tensor
    classes: list[str]
    # Images without labels that only the pretext stage may use (e.g. STL-10's `unlabeled` split).
    extra_unlabeled: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)
    # Folders only: absolute path of every image, row for row (the leakage guard compares them by content).
    train_files: np.ndarray | None = None
    test_files: np.ndarray | None = None
    # Group id (patient, slide) of every image, row for row, as strings; None = one group per image.
    train_groups: np.ndarray | None = None
    test_groups: np.ndarray | None = None

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def as_nchw_uint8(images, channels_last: bool) -> torch.Tensor:
    """Convert a numpy/tensor batch (N,H,W), (N,H,W,C) or (N,C,H,W) into a contiguous uint8 NCHW tensor."""
    tensor = torch.as_tensor(images)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {tensor.dtype}")
    if tensor.ndim == 3:
        tensor = tensor.unsqueeze(1)
    elif channels_last:
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.contiguous()
