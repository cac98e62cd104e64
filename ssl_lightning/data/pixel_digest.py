"""A digest of the pixels a run reads, for the keys of stored work (pretext encoders, features, cell folders).

A store key built from settings alone serves old results after the images change under the same settings
(same folder, same manifest CSV, same names). The digest closes that hole without decoding anything twice:

- in-memory images (the built-in data sets, folders decoded without paths.cache) are hashed byte for byte with
  sha256 (about 0.04 s for Fashion-MNIST's 60k x 28 x 28 on this machine: sha256 runs on the CPU's SHA
  instructions, faster here than blake2b);
- images served from the image store are named by their entry's key, which hashes every file's relative path,
  size and modification time, the labels and the decode settings (data/image_store.py): a file written again
  gets a new modification time, hence a new entry and a new digest, without reading a pixel;
- lazy views (rows, channel expansion, resizing, unions) are digested from what they are made of.

A file replaced while keeping its size and modification time (a copy that forges both) is not seen: the image store
itself would serve the old pixels in that case.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ssl_lightning.data.mapped_images import (
    ConcatImages,
    ExpandChannels,
    LazyImages,
    ResizedImages,
    RowView,
    ShardedImages,
)

_CHUNK_ROWS = 4096  # rows per gather when an unknown lazy collection must be read


def _tensor_digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}|{tuple(data.shape)}|".encode())
    if data.numel():
        digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def _combine(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def pixel_digest(images: torch.Tensor | LazyImages | None) -> str | None:
    """A hex digest that changes whenever the pixels of `images` (or their row order) can have changed."""
    if images is None:
        return None
    if isinstance(images, torch.Tensor):
        return _tensor_digest(images)
    if isinstance(images, ShardedImages):  # the image store entry's folder is named by its key
        return _combine("store", images.folder.name, str(images.shape))
    if isinstance(images, RowView):
        rows = hashlib.sha256(np.ascontiguousarray(images.rows, dtype=np.int64).tobytes()).hexdigest()
        return _combine("rows", pixel_digest(images.base) or "", rows)
    if isinstance(images, ExpandChannels):
        return _combine("channels", pixel_digest(images.base) or "", str(images.shape))
    if isinstance(images, ResizedImages):
        return _combine("resized", pixel_digest(images.base) or "", str(images.size))
    if isinstance(images, ConcatImages):
        return _combine("concat", *(pixel_digest(part) or "" for part in images.parts))
    digest = hashlib.sha256(f"lazy|{tuple(images.shape)}|".encode())  # another kind of view: read its pixels
    for start in range(0, len(images), _CHUNK_ROWS):
        rows = np.arange(start, min(start + _CHUNK_ROWS, len(images)))
        digest.update(memoryview(images.take(rows).contiguous().reshape(-1).numpy()))
    return digest.hexdigest()
