"""Decoding one image file into a uint8 C x H x W array (run inside the image store's decode workers).

Measured on 224 px JPEG tiles (1 core, docs/guide.md "The image store"): torchvision.io.decode_image (libjpeg-turbo)
decodes about 1.2x faster than Pillow when no resize is needed; with a resize, Pillow's decode+resize is as
fast or faster than decode_image + torch interpolate. So JPEGs already at the stored size go through
torchvision, everything else (other formats, resizing, palette/alpha modes) through Pillow.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
DECODER = "torchvision-jpeg+pillow-bilinear-v1"  # part of the store key: a change of decoder re-decodes
_JPEG = (".jpg", ".jpeg")
# Everything a broken, hostile or oversized file makes Pillow or torchvision raise: a bad image, not a crash.
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, RuntimeError, Image.DecompressionBombError,
                 Image.DecompressionBombWarning, MemoryError)


def pixel_limit(max_pixels: int | None) -> int:
    """data.max_image_pixels, or Pillow's own decompression-bomb threshold when it is null."""
    return int(max_pixels) if max_pixels is not None else int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def read_header(path: str, max_pixels: int | None = None) -> tuple[str, tuple[int, int]] | str:
    """(mode, (width, height)) from the file header, or the reason it cannot be read (too many pixels included:
    a 14000 x 14000 PNG is refused here, before a byte of it is decoded)."""
    limit = pixel_limit(max_pixels)
    if limit > (Image.MAX_IMAGE_PIXELS or 0):  # a larger limit asked for: Pillow's own guard must not refuse it
        Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            with Image.open(path) as image:
                mode, size = image.mode, image.size
    except DECODE_ERRORS as error:
        return error.__class__.__name__
    if size[0] * size[1] > limit:
        return f"{size[0]}x{size[1]} pixels, over data.max_image_pixels={limit}"
    return mode, size


def _torchvision(path: str, mode: str) -> np.ndarray | None:
    try:
        from torchvision.io import ImageReadMode, decode_image, read_file
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    read_mode = ImageReadMode.GRAY if mode == "L" else ImageReadMode.RGB
    return decode_image(read_file(path), mode=read_mode).numpy()


def decode_file(path: str, mode: str, size: tuple[int, int], resize: bool) -> np.ndarray:
    """Pixels in `mode` ("L" or "RGB") at `size` (width, height); resizes bilinearly when `resize`."""
    if path.lower().endswith(_JPEG):
        with Image.open(path) as probe:
            native = probe.size == size and probe.mode in ("L", "RGB")
        if native:
            array = _torchvision(path, mode)
            if array is not None:
                return array
    with Image.open(path) as image:
        image.load()
        converted = image.convert(mode)
    if resize and converted.size != size:
        converted = converted.resize(size, Image.BILINEAR)
    if converted.size != size:
        raise ValueError(f"image is {converted.size[0]}x{converted.size[1]}, expected {size[0]}x{size[1]}")
    array = np.asarray(converted, dtype=np.uint8)
    return array[None] if mode == "L" else array.transpose(2, 0, 1)
