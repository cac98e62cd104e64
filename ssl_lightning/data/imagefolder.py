"""The user's own images: one folder per class, with train/ and test/ or a stratified seeded split by group.

Images below a class folder may sit in per-patient (per-slide) folders; `data.group_by` (data/groups.py) names
the group of every image and the test split, when drawn here, keeps every group on one side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.folder_checks import check_folder_split
from ssl_lightning.data.folder_decode import decode_files
from ssl_lightning.data.group_split import GroupIndex, draw_whole_groups
from ssl_lightning.data.groups import folder_groups, log_group_counts, parse_rule
from ssl_lightning.data.image_files import list_images
from ssl_lightning.data.registry import DatasetSpec, register
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


def grouped_test_split(labels: np.ndarray, groups: np.ndarray | None, test_split: float, seed: int,
                       classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, test) indices by whole groups; with one group per image the per-image split of old.

    Grouped data needs every class on both sides; a class with too few groups is a UserError."""
    index = GroupIndex(labels, groups)

    def wanted(cls: int, available: int) -> int:
        return max(1, int(round(test_split * available))) if available > 1 else 0

    everything = np.arange(len(labels), dtype=np.int64)
    test = draw_whole_groups(index, everything, lambda cls: [seed, cls], wanted, leave_one=index.grouped)
    train = np.setdiff1d(everything, test)
    if index.grouped:
        for cls in np.unique(labels):
            if not np.any(labels[test] == cls) or not np.any(labels[train] == cls):
                count = index.count_groups(everything[labels == cls])
                raise UserError(f"class {classes[int(cls)]!r} has images in {count} group(s), too few to put it on "
                                "both sides of a test split by group; add groups of that class, name the patient "
                                "level (data.group_by=folder:<k> or a regex), give train/ and test/ folders (or a "
                                "manifest's split column), or set data.group_by=none (patients may then leak)")
    return train, test


def _flatten(files: dict[str, list[Path]], class_names: list[str], base: Path) -> tuple[list[Path], list[int],
                                                                                         list[str], list[str]]:
    """Paths, labels, paths relative to their class folder and the class folder names, in one order."""
    paths, labels, relative, owners = [], [], [], []
    for index, name in enumerate(class_names):
        for path in files.get(name, []):
            paths.append(path)
            labels.append(index)
            relative.append(path.relative_to(base / name).as_posix())
            owners.append(name)
    return paths, labels, relative, owners


def load(config: DataConfig) -> ImageSet:
    if not config.root:
        raise UserError("data=imagefolder needs data.root=/path/to/images (one folder per class)")
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise UserError(f"data.root={root} does not exist; point it at a folder with one sub-folder per class")
    rule = parse_rule(config.group_by)
    official = (root / "train").is_dir() and (root / "test").is_dir()
    if official:
        train_files = _class_files(root / "train", config.include)
        test_files = _class_files(root / "test", config.include)
        classes = sorted(set(train_files) | set(test_files))
        train = _flatten(train_files, classes, root / "train")
        test = _flatten(test_files, classes, root / "test")
        paths, labels, relative, owners = (a + b for a, b in zip(train, test, strict=True))
        n_requested_train = len(train[0])
    else:
        files = _class_files(root, config.include)
        classes = sorted(files)
        paths, labels, relative, owners = _flatten(files, classes, root)
    groups = folder_groups(rule, relative, owners)
    # One decode (one store entry) for both parts, train rows first.
    decoded = decode_files(root, paths, labels, config)
    kept_groups = None if groups is None else groups[decoded.kept]
    if official:
        n_train = int(np.sum(decoded.kept < n_requested_train))
        train_idx, test_idx = np.arange(n_train), np.arange(n_train, len(decoded.kept))
    else:
        train_idx, test_idx = grouped_test_split(decoded.labels.numpy(), kept_groups, config.test_split,
                                                 config.test_split_seed, classes)
    if kept_groups is not None:
        log_group_counts(rule.describe(), kept_groups, decoded.labels.numpy(), classes)
    train_x, train_y = decoded.images[train_idx], decoded.labels[train_idx]
    test_x, test_y = decoded.images[test_idx], decoded.labels[test_idx]
    train_files, test_files = decoded.files[train_idx], decoded.files[test_idx]
    if len(train_x) == 0:
        raise UserError(f"no readable training images in {root}; check data.include and the files")
    check_folder_split(root, classes, train_y.numpy(), test_y.numpy(), train_files, test_files)  # guide: Robustness
    notes = [f"imagefolder {root}: {len(train_x)} train / {len(test_x)} test images, {train_x.shape[1]} channel(s)"]
    return ImageSet(train_x, train_y, test_x, test_y, classes, notes=notes, train_files=train_files,
                    test_files=test_files,
                    train_groups=None if kept_groups is None else kept_groups[train_idx],
                    test_groups=None if kept_groups is None else kept_groups[test_idx])


def files(config: DataConfig) -> tuple[Path, list[Path]] | None:
    """Its images as the leakage guard sees them: every image below data.root, data.include or not (train/ and
    test/ alike), so a copy of the target's held-out images is found wherever it sits."""
    root = Path(config.root).expanduser() if config.root else None
    return (root, list_images(root, None)) if root is not None and root.is_dir() else None


register(DatasetSpec("imagefolder", load, test_split="drawn", leakage="files", files=files,
                     decode_at_target_size=True, groups=True))
