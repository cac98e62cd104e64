"""A folder's files as pixels: through the image store when `paths.cache` is known, else decoded into memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.image_files import decode_images
from ssl_lightning.data.image_store import ImageStore, StoreRequest
from ssl_lightning.data.mapped_images import LazyImages


@dataclass
class DecodedFiles:
    images: torch.Tensor | LazyImages  # store-backed (memory-mapped) or in memory
    labels: torch.Tensor
    files: np.ndarray  # absolute paths (str) of the kept images, row order
    kept: np.ndarray  # positions of the kept images in the requested file list


def decode_files(root: Path, paths: list[Path], labels: list[int] | None, config: DataConfig) -> DecodedFiles:
    """Decode `paths` (labels in the same order, or None); unreadable files follow data.on_bad_image."""
    label_array = None if labels is None else np.asarray(labels, dtype=np.int64)
    if config.image_cache:
        request = StoreRequest(root=root, files=paths, labels=label_array, image_size=config.image_size,
                               channels=None, include=config.include, on_bad_image=config.on_bad_image,
                               decode_workers=config.decode_workers, max_pixels=config.max_image_pixels)
        stored = ImageStore(Path(config.image_cache)).open(request)
        files = np.asarray([str(root.resolve() / name) for name in stored.files], dtype=object)
        return DecodedFiles(stored.images, torch.from_numpy(stored.labels), files, stored.kept)
    images, kept_list = decode_images(paths, config.image_size, config.on_bad_image,
                                     max_pixels=config.max_image_pixels)
    kept = np.asarray(kept_list, dtype=np.int64)
    kept_labels = np.zeros(len(kept), dtype=np.int64) if label_array is None else label_array[kept]
    files = np.asarray([str(Path(paths[k]).resolve()) for k in kept], dtype=object)
    return DecodedFiles(images, torch.from_numpy(kept_labels), files, kept)
