"""STL-10 from its binary files; the 100k `unlabeled` images feed only the pretext stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.download import ensure_files
from ssl_lightning.data.registry import DatasetSpec, register
from ssl_lightning.errors import UserError

FOLDER = "stl10_binary"
SIDE = 96


def _read_images(path: Path) -> torch.Tensor:
    """STL-10 stores each image channel-major and column-major: (N, C, W, H) on disk."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (3 * SIDE * SIDE):
        raise UserError(f"{path} is truncated ({raw.size} bytes); delete {path.parent} to re-download")
    images = raw.reshape(-1, 3, SIDE, SIDE).transpose(0, 1, 3, 2)
    return torch.from_numpy(np.ascontiguousarray(images))


def _read_labels(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8).astype(np.int64) - 1)  # stored as 1..10


def _ensure_files(root: Path, download: bool) -> Path:
    def fetch() -> None:
        from torchvision.datasets import STL10

        STL10(str(root), split="train+unlabeled", download=True)

    needed = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]
    return ensure_files(root / FOLDER, needed, download, "STL-10", fetch)


def load(config: DataConfig) -> ImageSet:
    folder = _ensure_files(Path(config.root or "data").expanduser(), config.download)
    names_path = folder / "class_names.txt"
    classes = names_path.read_text().split() if names_path.is_file() else [str(i) for i in range(10)]
    unlabeled_path = folder / "unlabeled_X.bin"
    return ImageSet(
        train_images=_read_images(folder / "train_X.bin"),
        train_labels=_read_labels(folder / "train_y.bin"),
        test_images=_read_images(folder / "test_X.bin"),
        test_labels=_read_labels(folder / "test_y.bin"),
        classes=classes,
        extra_unlabeled=_read_images(unlabeled_path) if unlabeled_path.is_file() else None,
        notes=[f"STL-10 from {folder}"],
    )


register(DatasetSpec("stl10", load, test_split="own", leakage="by_name"))
