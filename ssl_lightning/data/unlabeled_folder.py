"""A folder tree of images with no class structure (e.g. another organ's slides) for the pretext stage only."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.folder_decode import decode_files
from ssl_lightning.data.image_files import list_images
from ssl_lightning.data.registry import DatasetSpec, register
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
    decoded = decode_files(root, paths, None, config)
    images = decoded.images
    return ImageSet(images, torch.zeros(len(images), dtype=torch.long), images[:0], torch.zeros(0, dtype=torch.long),
                    classes=[], notes=[f"unlabeled_folder {root}: {len(images)} images"], train_files=decoded.files,
                    test_files=decoded.files[:0])


def files(config: DataConfig) -> tuple[Path, list[Path]] | None:
    """Its images as the leakage guard sees them: those matching data.include below data.root."""
    root = Path(config.root).expanduser() if config.root else None
    return (root, list_images(root, config.include)) if root is not None and root.is_dir() else None


register(DatasetSpec("unlabeled_folder", load, test_split="none", leakage="files", files=files,
                     decode_at_target_size=True))
