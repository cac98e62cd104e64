"""Refuse pretext data that holds the target's validation or test images (checked before anything is written).

Pretext training on images the downstream stage later selects on or is tested on inflates the result. The
guard by name (same data set and root -> only the target's training pool) misses another entry pointing at
the same files: an `unlabeled_folder` at the target's root, a copy of the test folder elsewhere, or a built-in
data set named again with another root. Each data set's spec (data/registry.py, a required field) says how it
is checked: by name, or by its files, which are compared by resolved path and, for files of equal size, by the
sha256 of their bytes (only size matches are hashed, so the check stays cheap on large folders).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.registry import find
from ssl_lightning.errors import UserError
from ssl_lightning.file_hash import file_sha256


class _Protected:
    """The target's validation and test files, indexed by resolved path and by size."""

    def __init__(self, files: dict[str, str]):
        self.kind = files  # resolved path -> "validation" | "test"
        self.by_size: dict[int, list[str]] = defaultdict(list)
        for path in files:
            self.by_size[os.stat(path).st_size].append(path)
        self._hashes: dict[str, str] = {}

    def _hash(self, path: str) -> str:
        if path not in self._hashes:
            self._hashes[path] = file_sha256(path)
        return self._hashes[path]

    def held_by(self, candidates: Iterable[Path]) -> set[str]:
        """The protected files that one of `candidates` is, or equals byte for byte."""
        held: set[str] = set()
        for candidate in candidates:
            resolved = str(Path(candidate).resolve())
            if resolved in self.kind:
                held.add(resolved)
                continue
            same_size = self.by_size.get(os.stat(resolved).st_size)
            if same_size:
                digest = file_sha256(resolved)
                held.update(path for path in same_size if self._hash(path) == digest)
        return held


def _protected_files(target: ImageSet, val: np.ndarray) -> dict[str, str]:
    files: dict[str, str] = {}
    if target.train_files is not None:
        files.update((str(Path(path).resolve()), "validation") for path in target.train_files[np.asarray(val)])
    if target.test_files is not None:
        files.update((str(Path(path).resolve()), "test") for path in target.test_files)
    return files


def _describe(held: set[str], kind: dict[str, str]) -> str:
    counts = {name: sum(kind[path] == name for path in held) for name in ("test", "validation")}
    return " and ".join(f"{count:,} of the target's {name} images" for name, count in counts.items() if count)


def check_pretext_leakage(sources: dict[str, DataConfig | None], target_config: DataConfig, target: ImageSet,
                          val: np.ndarray) -> None:
    """UserError naming the first pretext entry that holds any validation or test image of the target."""
    for entry, config in sources.items():
        if config is None:
            continue  # the target itself: its training pool only, by construction
        spec = find(config.name)  # an unknown name: load_sources reports it
        if config.name == target_config.name and spec is not None and spec.leakage == "by_name":
            raise UserError(f"pretext_data.{entry} is the target data set {config.name} again with another root "
                            f"({config.root} vs {target_config.root}), so it holds the target's validation and test "
                            f"images; drop it or give both the same root")
    protected = _protected_files(target, val)
    if not protected:
        return
    index = _Protected(protected)
    for entry, config in sources.items():
        spec = None if config is None else find(config.name)
        if config is None or spec is None or spec.files is None:
            continue
        listed = spec.files(config)
        if listed is None:
            continue  # the loader reports a missing folder or file in its own words
        where, files = listed
        held = index.held_by(files)
        if held:
            raise UserError(f"pretext_data.{entry} holds {_describe(held, index.kind)} ({where}); "
                            "point it at a folder without them")


def _group_set(groups: np.ndarray | None, rows: np.ndarray | None = None) -> set[str] | None:
    if groups is None:
        return None
    return set(np.asarray(groups if rows is None else groups[np.asarray(rows, dtype=np.int64)]).astype(str).tolist())


def check_group_leakage(target: ImageSet, labeled: np.ndarray, val: np.ndarray, pool: np.ndarray) -> None:
    """UserError naming a group (patient, slide) found in two of {labelled training, validation, test}, or a test
    group among the pretext pool's images. The pretext stage may see validation images: it never sees labels.

    The splits drawn here keep groups whole, so this fires on an official split (train/ and test/ folders, a
    manifest's split column) that puts one patient on both sides, before anything trains."""
    parts = {"labelled training images": _group_set(target.train_groups, labeled),
             "validation pool": _group_set(target.train_groups, val),
             "test split": _group_set(target.test_groups),
             "pretext pool (training images outside the validation pool)": _group_set(target.train_groups, pool)}
    pairs = (("labelled training images", "test split"), ("validation pool", "test split"),
             ("labelled training images", "validation pool"),
             ("pretext pool (training images outside the validation pool)", "test split"))
    for first, second in pairs:
        a, b = parts[first], parts[second]
        if a is None or b is None:
            continue
        shared = sorted(a & b)
        if shared:
            more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
            raise UserError(f"group {shared[0]!r}{more} is in both the {first} and the {second}; keep each "
                            "patient/slide on one side (fix the train/ and test/ folders or the manifest's split "
                            "column, or check data.group_by)")
