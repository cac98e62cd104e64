"""Decoding one image file into a uint8 C x H x W array (run inside the image store's decode workers).

Measured on 224 px JPEG tiles (1 core, README "Image store"): torchvision.io.decode_image (libjpeg-turbo)
decodes about 1.2x faster than Pillow when no resize is needed; with a resize, Pillow's decode+resize is as
fast or faster than decode_image + torch interpolate. So JPEGs already at the stored size go through
torchvision, everything else (other formats, resizing, palette/alpha modes) through Pillow.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
DECODER = "torchvision-jpeg+pillow-bilinear-v1"  # part of the store key: a change of decoder re-decodes
_JPEG = (".jpg", ".jpeg")


def read_header(path: str) -> tuple[str, tuple[int, int]] | str:
    """(mode, (width, height)) from the file header, or the reason it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return error.__class__.__name__


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
