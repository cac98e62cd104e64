"""The conventional SSL input pipeline, for comparison: per-sample torchvision v2 transforms in DataLoader workers.

This is what most SSL repositories do: a Dataset that turns each stored array into a PIL image in
`__getitem__`, applies the augmentation to that one image, and lets 2 worker processes collate the batch.
The training step then uses the same encoder, head and loss as our LightningModules.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from ssl_lightning.methods.losses import nt_xent
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.methods.simclr import SimCLRPretext

NUM_WORKERS = 2  # what most SSL repositories use on a workstation


class PerSampleImages(Dataset):
    """uint8 images stored as arrays, decoded to PIL (or a per-image tensor) one at a time, then transformed."""

    def __init__(self, images: torch.Tensor, transform, as_pil: bool = True):
        array = np.ascontiguousarray(images.permute(0, 2, 3, 1).numpy())  # N x H x W x C, as CIFAR-10 stores it
        self.array = array[..., 0] if array.shape[-1] == 1 else array
        self.images = images
        self.transform, self.as_pil = transform, as_pil

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.array[index]) if self.as_pil else v2.functional.to_image(self.images[index])
        return self.transform(image)


def _finish(channels: int) -> v2.Compose:
    """To a float tensor in [-1, 1], the scale our methods' `standardize` produces."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize([0.5] * channels, [0.5] * channels)])


def _jitter(strength: float) -> v2.RandomApply:
    s = strength
    return v2.RandomApply([v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)], p=0.8)


def simclr_transform(module: SimCLRPretext, size: int, channels: int) -> v2.Compose:
    """SimCLR's view with the module's settings: crop + flip, jitter (p=0.8), grayscale (no blur, as ours)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(module.crop_min_scale, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        _jitter(module.jitter_strength),
        v2.RandomGrayscale(p=module.grayscale_p),
        _finish(channels),
    ])


class TwoViews:
    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image):
        return self.transform(image), self.transform(image)


class FourRotations:
    """RotNet's per-sample input: the image in all four rotations (each optionally jittered) and labels 0-3."""

    def __init__(self, channels: int, jitter_strength: float | None):
        self.jitter = _jitter(jitter_strength) if jitter_strength is not None else None
        self.finish = _finish(channels)

    def _rotations(self, image):
        if isinstance(image, Image.Image):
            return [image, *(image.transpose(t) for t in
                              (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270))]
        return [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]

    def __call__(self, image):
        copies = self._rotations(image)
        if self.jitter is not None:
            copies = [self.jitter(copy) for copy in copies]
        return torch.stack([self.finish(copy) for copy in copies]), torch.arange(4)


def make_transform(module, size: int, channels: int):
    if isinstance(module, SimCLRPretext):
        return TwoViews(simclr_transform(module, size, channels))
    return FourRotations(channels, module.jitter_strength if module.jitter else None)


def make_loader(images: torch.Tensor, module, batch_size: int, as_pil: bool, pin_memory: bool,
                seed: int = 0) -> DataLoader:
    """Shuffled, per-sample DataLoader with 2 workers (fresh workers each time it is iterated)."""
    transform = make_transform(module, int(images.shape[-1]), int(images.shape[1]))
    return DataLoader(PerSampleImages(images, transform, as_pil), batch_size=batch_size, shuffle=True,
                      num_workers=NUM_WORKERS, drop_last=True, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed))


def training_step(module, optimizer: torch.optim.Optimizer, batch, device: torch.device) -> float:
    """One step on an already augmented batch, with the module's own encoder, head/projector and loss."""
    if isinstance(module, SimCLRPretext):
        view1, view2 = (view.to(device, non_blocking=True) for view in batch)
        z1, z2 = module.projector(module.encoder(torch.cat([view1, view2]))).chunk(2)
        loss, _ = nt_xent(z1, z2, module.temperature)
    else:
        assert isinstance(module, RotationPretext)
        images, labels = batch
        images = images.to(device, non_blocking=True).flatten(0, 1)  # B x 4 x C x H x W -> 4B x C x H x W
        labels = labels.to(device, non_blocking=True).flatten()
        loss = F.cross_entropy(module.head(module.encoder(images)), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())

