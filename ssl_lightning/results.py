"""What every cell writes next to its logs: results.json and the exact label subset."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ssl_lightning.atomic import write_json
from ssl_lightning.data.fractions import LabelSplit


def git_commit() -> str | None:
    """The commit of the code that ran (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_subset(run_dir: Path, split: LabelSplit, labels: np.ndarray, classes: list[str], fraction: float,
                 split_seed: int) -> dict[str, int]:
    """Record the labelled indices, the validation indices selected on and per-class counts (indices into the
    train set); the validation pool itself follows from the split seed."""
    per_class = split.labeled_per_class(labels, classes)
    val = split.selection_val
    val_counts = np.bincount(labels[val], minlength=len(classes)) if len(val) else np.zeros(len(classes))
    write_json(run_dir / "subset.json", {
        "fraction": fraction, "split_seed": split_seed, "labeled_per_class": per_class,
        "val_per_class": {name: int(c) for name, c in zip(classes, val_counts, strict=True)},
        "labeled_indices": split.labeled.tolist(), "val_indices": val.tolist(),
        "val_pool_size": int(len(split.val)),
    })
    return per_class


def write_results(run_dir: Path, results: dict[str, Any]) -> Path:
    path = run_dir / "results.json"
    write_json(path, results)
    return path
