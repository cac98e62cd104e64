"""What every cell writes next to its logs: results.json and the exact label subset."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ssl_lightning.atomic import write_json
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import LabelSplit
from ssl_lightning.record import RunRecord


def git_commit() -> str | None:
    """The commit of the code that ran (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _sorted_groups(groups: np.ndarray, rows: np.ndarray | None = None) -> list[str]:
    chosen = groups if rows is None else groups[np.asarray(rows, dtype=np.int64)]
    return sorted(set(np.asarray(chosen).astype(str).tolist()))


def group_record(split: LabelSplit, train_groups: np.ndarray | None,
                 test_groups: np.ndarray | None) -> dict[str, list[str]] | None:
    """Sorted group ids per part (`val` = the validation pool, which the selection is part of); None when every
    image is its own group (the ids would only repeat the indices)."""
    if train_groups is None or test_groups is None:
        return None
    return {"labeled": _sorted_groups(train_groups, split.labeled), "val": _sorted_groups(train_groups, split.val),
            "pool": _sorted_groups(train_groups, split.pool), "test": _sorted_groups(test_groups)}


def split_fields(split: LabelSplit, images: ImageSet, data: DataConfig) -> dict[str, Any]:
    """results.json fields of the split: seeds, label budget, share reached per class, groups per part
    (`num_groups` counts images where every image is its own group)."""
    record = group_record(split, images.train_groups, images.test_groups)
    if record is None:
        num_groups = {"labeled": len(split.labeled), "val": len(split.val), "pool": len(split.pool),
                      "test": len(images.test_labels)}
    else:
        num_groups = {part: len(ids) for part, ids in record.items()}
    labels = images.train_labels.numpy()
    return {"val_seed": data.validation_seed, "labels_per_class": data.labels_per_class,
            "labeled_share_per_class": split.labeled_share_per_class(labels, images.classes),
            "group_by": data.group_by if record is not None else "none", "num_groups": num_groups}


def balance_fields(split: LabelSplit, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """data.balance's results.json fields: labelled images per class after balancing (`balanced_to`) and the tiles
    of labelled patients cut to reach it, in all and per class (left unlabelled); {} without data.balance."""
    if split.balanced_to is None:
        return {}
    dropped = np.zeros(0, dtype=np.int64) if split.balance_dropped is None else split.balance_dropped
    counts = np.bincount(labels[dropped], minlength=len(classes))
    return {"balanced_to": int(split.balanced_to), "balance_dropped": int(len(dropped)),
            "balance_dropped_per_class": {name: int(c) for name, c in zip(classes, counts, strict=True)}}


def write_subset(run_dir: Path, split: LabelSplit, labels: np.ndarray, classes: list[str], fraction: float,
                 split_seed: int, val_seed: int | None = None, labels_per_class: int | None = None,
                 train_groups: np.ndarray | None = None, test_groups: np.ndarray | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, int]:
    """Record the labelled indices, the validation indices selected on and per-class counts (indices into the
    train set), the seeds that drew them and, for grouped data, the sorted group ids of every part (`groups`:
    null when every image is its own group), and `extra` fields (data.test_folds: the fold's test rows and groups)."""
    per_class = split.labeled_per_class(labels, classes)
    val = split.selection_val
    val_counts = np.bincount(labels[val], minlength=len(classes)) if len(val) else np.zeros(len(classes))
    write_json(run_dir / "subset.json", {
        "fraction": fraction, "labels_per_class": labels_per_class, "split_seed": split_seed,
        "val_seed": split_seed if val_seed is None else val_seed, "labeled_per_class": per_class,
        "val_per_class": {name: int(c) for name, c in zip(classes, val_counts, strict=True)},
        "labeled_indices": split.labeled.tolist(), "val_indices": val.tolist(),
        "val_pool_size": int(len(split.val)),
        "groups": group_record(split, train_groups, test_groups),
        **({} if split.balanced_to is None else {  # data.balance: the labelled patients' tiles left unlabelled
            "balanced_to": int(split.balanced_to),
            "balance_dropped_indices": [] if split.balance_dropped is None else split.balance_dropped.tolist()}),
        **(extra or {}),
    })
    return per_class


def write_results(run_dir: Path, record: RunRecord) -> Path:
    """results.json through the typed record (ssl_lightning/record.py), with its schema_version."""
    path = run_dir / "results.json"
    write_json(path, record.to_json())
    return path
