"""Finding and decoding image files on disk into uint8 tensors (shared by imagefolder and unlabeled_folder)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_lightning.data.image_decode import DECODE_ERRORS, read_header
from ssl_lightning.errors import UserError

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


def list_images(folder: Path, include: str | None) -> list[Path]:
    """Image files below `folder` matching the `include` glob (default: any depth), sorted for determinism."""
    pattern = include or "**/*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class BadImage(ValueError):
    """A file whose header says it cannot or must not be decoded (e.g. more pixels than allowed)."""


def _open(path: Path, max_pixels: int | None = None) -> Image.Image:
    header = read_header(str(path), max_pixels)
    if isinstance(header, str):
        raise BadImage(header)
    with Image.open(path) as image:
        image.load()
        return image.copy()


def decode_images(
    paths: Sequence[Path], image_size: int | None, on_bad_image: str, channels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[torch.Tensor, list[int]]:
    """Decode files into one uint8 N x C x H x W tensor; returns it and the positions that were kept.

    Channels are detected: 1 when every image is grayscale, else 3. Without `image_size` all images
    must share one size, because batches are stacked tensors.
    """
    images: list[Image.Image] = []
    kept: list[int] = []
    skipped = 0
    for position, path in enumerate(paths):
        try:
            images.append(_open(path, max_pixels))
            kept.append(position)
        except DECODE_ERRORS as error:
            if on_bad_image == "skip":
                skipped += 1
                continue
            reason = str(error) if isinstance(error, BadImage) else error.__class__.__name__
            raise UserError(f"cannot read image {path} ({reason}); remove it or set data.on_bad_image=skip") from None
    if skipped:
        log.warning("skipped %d unreadable image(s) (data.on_bad_image=skip)", skipped)
    if not images:
        return torch.empty(0, channels or 3, image_size or 1, image_size or 1, dtype=torch.uint8), kept
    if channels is None:
        channels = 1 if all(image.mode in _GRAY_MODES for image in images) else 3
    mode = "L" if channels == 1 else "RGB"
    sizes = {image.size for image in images}
    if image_size is None and len(sizes) > 1:
        raise UserError(
            f"images have {len(sizes)} different sizes (e.g. {sorted(sizes)[:3]}); set data.image_size=N to resize"
        )
    arrays = []
    for image in images:
        image = image.convert(mode)
        if image_size is not None and image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8)
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays)), kept
