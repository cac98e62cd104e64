"""CIFAR-10 from its python pickle batches (read safely); torchvision downloads them when missing."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ssl_lightning.data.base import ImageSet, as_nchw_uint8
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.download import ensure_files
from ssl_lightning.data.registry import DatasetSpec, register
from ssl_lightning.data.safe_pickle import load_pickle
from ssl_lightning.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCHES = ["test_batch"]


def _read_batches(folder: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        path = folder / name
        try:
            batch = load_pickle(path)
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            images.append(data)
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
            raise UserError(f"cannot read CIFAR-10 batch {path}: {error}; delete {folder} to re-download") from error
    return np.concatenate(images), np.concatenate(labels)


def _class_names(folder: Path) -> list[str]:
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        try:
            names = load_pickle(meta_path)[b"label_names"]
        except (OSError, EOFError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as error:
            raise UserError(f"cannot read CIFAR-10 file {meta_path}: {error}; delete {folder}, then retry") from error
        return [name.decode() if isinstance(name, bytes) else str(name) for name in names]
    return [str(i) for i in range(10)]


def _ensure_files(root: Path, download: bool) -> Path:
    def fetch() -> None:
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)

    return ensure_files(root / FOLDER, TRAIN_BATCHES + TEST_BATCHES, download, "CIFAR-10", fetch)


def load(config: DataConfig) -> ImageSet:
    folder = _ensure_files(Path(config.root or "data").expanduser(), config.download)
    train_x, train_y = _read_batches(folder, TRAIN_BATCHES)
    test_x, test_y = _read_batches(folder, TEST_BATCHES)
    return ImageSet(
        train_images=as_nchw_uint8(train_x, channels_last=False),
        train_labels=torch.from_numpy(train_y),
        test_images=as_nchw_uint8(test_x, channels_last=False),
        test_labels=torch.from_numpy(test_y),
        classes=_class_names(folder),
        notes=[f"CIFAR-10 from {folder}"],
    )


register(DatasetSpec("cifar10", load, test_split="own", leakage="by_name"))
