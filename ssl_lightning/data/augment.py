"""Batched augmentation on the training device: every image gets its own random parameters.

All functions take float images in [0, 1], shape B x C x H x W, and keep shape, dtype and range.
Geometric ops use one affine grid per batch (crop box, scale and flip per image); rotations use
`torch.rot90` so no pixel is interpolated. Every random draw takes an optional `generator` (on the images'
device): the trainer's per-rank, per-epoch stream (data/augment_streams.py), or torch's global one when None.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ssl_lightning.data.stain import hed_jitter as stain_jitter

_LUMA = (0.299, 0.587, 0.114)


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1] (done on the device, after the transfer of the small uint8 batch)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def standardize(images: torch.Tensor) -> torch.Tensor:
    """Centre [0, 1] images to [-1, 1], the network's input scale."""
    return images * 2.0 - 1.0


def rotate_all_four(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image in all four rotations (0, 90, 180, 270 degrees counter-clockwise) and their labels."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError("rotation needs square images; set data.image_size")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=images.device).repeat_interleave(images.shape[0])
    return rotated, labels


def _uniform(shape: tuple[int, ...], low: float, high: float, like: torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.empty(shape, device=like.device, dtype=like.dtype).uniform_(low, high, generator=generator)


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) draws in `like`'s dtype on its device."""
    return torch.rand(shape, device=like.device, dtype=like.dtype, generator=generator)


def _affine_sample(images: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor,
                   shift_x: torch.Tensor, shift_y: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """Sample one axis-aligned box per image (normalised coordinates) and resize it to `out_size`."""
    batch = images.shape[0]
    theta = torch.zeros(batch, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    grid = F.affine_grid(theta, [batch, images.shape[1], *out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def random_resized_crop(images: torch.Tensor, scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                        out_size: tuple[int, int] | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """SimCLR's crop: a box of random area fraction and aspect ratio per image, resized, then h-flip."""
    batch = images.shape[0]
    area = _uniform((batch,), *scale, images, generator)
    log_ratio = _uniform((batch,), math.log(ratio[0]), math.log(ratio[1]), images, generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (_rand((batch,), images, generator) * 2 - 1) * (1 - width)
    centre_y = (_rand((batch,), images, generator) * 2 - 1) * (1 - height)
    flip = torch.where(_rand((batch,), images, generator) < flip_p, -1.0, 1.0).to(images.dtype)
    return _affine_sample(images, width * flip, height, centre_x, centre_y, out_size or tuple(images.shape[-2:]))


def random_shift_flip(images: torch.Tensor, max_shift: float = 0.125, flip_p: float = 0.5,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Light downstream augmentation: random translation (like pad-and-crop) and horizontal flip."""
    batch = images.shape[0]
    shift_x = _uniform((batch,), -2 * max_shift, 2 * max_shift, images, generator)
    shift_y = _uniform((batch,), -2 * max_shift, 2 * max_shift, images, generator)
    flip = torch.where(_rand((batch,), images, generator) < flip_p, -1.0, 1.0).to(images.dtype)
    ones = torch.ones(batch, device=images.device, dtype=images.dtype)
    return _affine_sample(images, ones * flip, ones, shift_x, shift_y, tuple(images.shape[-2:]))


def _gray(images: torch.Tensor) -> torch.Tensor:
    if images.shape[1] == 1:
        return images
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _rotate_hue(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Hue shift as a rotation about the grey axis in YIQ space (cheap, batched, per-image angle)."""
    to_yiq = images.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    to_rgb = torch.linalg.inv(to_yiq)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(images.shape[0], 3, 3, device=images.device, dtype=images.dtype)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    matrix = to_rgb @ rotation @ to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, images)


def color_jitter(images: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                 p: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """torchvision-style colour jitter with per-image factors, applied to each image with probability p.

    Grayscale inputs get brightness and contrast only: saturation and hue do not exist for them.
    """
    batch = images.shape[0]
    apply = (_rand((batch, 1, 1, 1), images, generator) < p).to(images.dtype)
    out = images
    if brightness > 0:
        factor = _uniform((batch, 1, 1, 1), max(0.0, 1 - brightness), 1 + brightness, images, generator)
        out = (out * factor).clamp(0, 1)
    if contrast > 0:
        factor = _uniform((batch, 1, 1, 1), max(0.0, 1 - contrast), 1 + contrast, images, generator)
        mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
        out = ((out - mean) * factor + mean).clamp(0, 1)
    if images.shape[1] == 3:
        if saturation > 0:
            factor = _uniform((batch, 1, 1, 1), max(0.0, 1 - saturation), 1 + saturation, images, generator)
            gray = _gray(out)
            out = ((out - gray) * factor + gray).clamp(0, 1)
        if hue > 0:
            angle = _uniform((batch,), -hue, hue, images, generator) * 2 * math.pi
            out = _rotate_hue(out, angle).clamp(0, 1)
    return apply * out + (1 - apply) * images


def random_grayscale(images: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each RGB image by its luma with probability p (no-op for 1-channel images)."""
    if images.shape[1] == 1 or p <= 0:
        return images
    apply = (_rand((images.shape[0], 1, 1, 1), images, generator) < p).to(images.dtype)
    return apply * _gray(images).expand_as(images) + (1 - apply) * images


def gaussian_blur(images: torch.Tensor, p: float, sigma: tuple[float, float] = (0.1, 2.0),
                  kernel_fraction: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian blur with its own sigma per image (BYOL/MoCo/DINO recipe), applied with probability p.

    The kernel spans `kernel_fraction` of the image side (the papers: 23 px at 224 px), odd and at least 3 px;
    sigma is drawn from `sigma` in units of 224-px pixels and scaled with the image, so a 28 px image is blurred
    as much, relative to its size, as an ImageNet crop. One grouped separable convolution for the whole batch.
    """
    if p <= 0:
        return images
    batch, height, width = images.shape[0], images.shape[2], images.shape[3]
    size = max(3, int(round(kernel_fraction * min(height, width))) // 2 * 2 + 1)
    sigmas = _uniform((batch,), *sigma, images, generator) * (min(height, width) / 224.0)
    apply = (_rand((batch, 1, 1, 1), images, generator) < p).to(images.dtype)
    return apply * blur_with_sigmas(images, sigmas, size) + (1 - apply) * images


def blur_with_sigmas(images: torch.Tensor, sigmas: torch.Tensor, size: int) -> torch.Tensor:
    """Blur image i with a `size`-tap Gaussian of std `sigmas[i]` (pixels), reflect padding, like torchvision."""
    batch, channels, height, width = images.shape
    offsets = torch.arange(size, device=images.device, dtype=images.dtype) - size // 2
    kernel = torch.exp(-(offsets[None, :] ** 2) / (2 * sigmas[:, None].clamp(min=1e-3) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # B*C x K
    flat = images.reshape(1, batch * channels, height, width)
    pad, groups = size // 2, batch * channels
    flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=groups)
    flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode="reflect"), kernel[:, None, :, None], groups=groups)
    return flat.reshape(batch, channels, height, width)


def solarize(images: torch.Tensor, p: float, threshold: float = 0.5,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Invert the pixels at or above `threshold` (PIL's solarize at 128/255), per image with probability p."""
    if p <= 0:
        return images
    apply = _rand((images.shape[0], 1, 1, 1), images, generator) < p
    return torch.where(apply & (images >= threshold), 1.0 - images, images)


def simclr_view(images: torch.Tensor, strength: float, crop_min_scale: float, grayscale_p: float,
                blur_p: float = 0.0, solarize_p: float = 0.0, crop_max_scale: float = 1.0,
                out_size: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                hed_jitter: float = 0.0) -> torch.Tensor:
    """One SimCLR view: crop + flip, colour jitter of strength s with p=0.8, grayscale p=0.2 (no blur).

    BYOL, MoCo v2, Barlow Twins and DINO add Gaussian blur (`blur_p`) and solarisation (`solarize_p`); DINO's
    local crops use a smaller `crop_max_scale` and `out_size`. `hed_jitter` > 0 varies the H&E stain of the
    crop (data/stain.py) before the colour jitter, as a different lab's scan of the same tissue would.
    """
    view = random_resized_crop(images, scale=(crop_min_scale, crop_max_scale), out_size=out_size,
                               generator=generator)
    view = stain_jitter(view, hed_jitter, generator)
    view = color_jitter(view, 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength, p=0.8,
                        generator=generator)
    view = random_grayscale(view, grayscale_p, generator)
    view = gaussian_blur(view, blur_p, generator=generator)
    return solarize(view, solarize_p, generator=generator)


def downstream_view(images: torch.Tensor, generator: torch.Generator | None = None,
                    hed_jitter: float = 0.0) -> torch.Tensor:
    """The downstream training augmentation: shift and flip, then the run's stain jitter (off at 0)."""
    return stain_jitter(random_shift_flip(images, generator=generator), hed_jitter, generator)
