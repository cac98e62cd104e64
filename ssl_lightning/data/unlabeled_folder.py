"""A folder tree of images with no class structure (e.g. another organ's slides) for the pretext stage only."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.image_files import decode_images, list_images
from ssl_lightning.errors import UserError


def load(config: DataConfig) -> ImageSet:
    """Every image below data.root matching data.include; no labels, no test split."""
    if not config.root:
        raise UserError("unlabeled_folder needs a root, e.g. pretext_data.unlabeled_folder.root=/path/to/images")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise UserError(f"unlabeled_folder root {root} does not exist; point it at a folder of images")
    paths = list_images(root, config.include)
    if not paths:
        hint = f" matching include={config.include!r}" if config.include else ""
        raise UserError(f"unlabeled_folder root {root} holds no images{hint}; add images or fix include")
    images, _ = decode_images(paths, config.image_size, config.on_bad_image)
    empty = images[:0]
    return ImageSet(images, torch.zeros(len(images), dtype=torch.long), empty, torch.zeros(0, dtype=torch.long),
                    classes=[], notes=[f"unlabeled_folder {root}: {len(images)} images"])
