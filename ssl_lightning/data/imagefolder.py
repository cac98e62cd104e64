"""The user's own images: one folder per class, with train/ and test/ or a stratified seeded split."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.folder_checks import check_folder_split
from ssl_lightning.data.folder_decode import decode_files
from ssl_lightning.data.image_files import list_images
from ssl_lightning.errors import UserError


def _class_files(folder: Path, include: str | None) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{folder} has no class folders; put each class's images in {folder}/<class name>/")
    files = {c.name: list_images(c, include) for c in classes}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        hint = f" matching data.include={include!r}" if include else ""
        raise UserError(f"class folder(s) {empty} in {folder} hold no images{hint}; add images or remove the folder")
    return files


def _stratified_test_split(labels: np.ndarray, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    train, test = [], []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng = np.random.default_rng([seed, int(cls)])
        members = rng.permutation(members)
        n_test = max(1, int(round(test_split * len(members)))) if len(members) > 1 else 0
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


def _flatten(files: dict[str, list[Path]], class_names: list[str]) -> tuple[list[Path], list[int]]:
    paths = [path for name in class_names for path in files.get(name, [])]
    labels = [class_names.index(name) for name in class_names for _ in files.get(name, [])]
    return paths, labels


def load(config: DataConfig) -> ImageSet:
    if not config.root:
        raise UserError("data=imagefolder needs data.root=/path/to/images (one folder per class)")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root={root} does not exist; point it at a folder with one sub-folder per class")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files = _class_files(root / "train", config.include)
        test_files = _class_files(root / "test", config.include)
        classes = sorted(set(train_files) | set(test_files))
        train_paths, train_labels = _flatten(train_files, classes)
        test_paths, test_labels = _flatten(test_files, classes)
        # One decode (one store entry) for both parts, train rows first.
        decoded = decode_files(root, train_paths + test_paths, train_labels + test_labels, config)
        n_train = int(np.sum(decoded.kept < len(train_paths)))
        train_idx, test_idx = np.arange(n_train), np.arange(n_train, len(decoded.kept))
    else:
        files = _class_files(root, config.include)
        classes = sorted(files)
        decoded = decode_files(root, *_flatten(files, classes), config)
        train_idx, test_idx = _stratified_test_split(decoded.labels.numpy(), config.test_split,
                                                     config.test_split_seed)
    train_x, train_y = decoded.images[train_idx], decoded.labels[train_idx]
    test_x, test_y = decoded.images[test_idx], decoded.labels[test_idx]
    train_files, test_files = decoded.files[train_idx], decoded.files[test_idx]
    if len(train_x) == 0:
        raise UserError(f"no readable training images in {root}; check data.include and the files")
    check_folder_split(root, classes, train_y.numpy(), test_y.numpy(), train_files, test_files)  # README Robustness
    notes = [f"imagefolder {root}: {len(train_x)} train / {len(test_x)} test images, {train_x.shape[1]} channel(s)"]
    return ImageSet(train_x, train_y, test_x, test_y, classes, notes=notes, train_files=train_files,
                    test_files=test_files)
