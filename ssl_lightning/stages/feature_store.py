"""Content-addressed store of frozen-encoder features, next to the pretext store (`<paths.cache>/features`).

An entry is `<root>/<key>/features.pt` (a dict of tensors: `train`, `test` float32 N x D in data-set row order,
`train_labels`, `test_labels` int64; loaded with weights_only=True) and `meta.json` (its sha256 and what produced
it), written like the pretext store's: the tensors atomically, meta.json last, under a per-key file lock so that
parallel sweep jobs wait for the one computing instead of computing twice. A corrupt entry fails its checksum,
is removed and recomputed; temporary files of a killed save are swept (pretext_store.sweep_stale_temps).

The key hashes what decides the features and nothing that does not: the encoder (its pretext key and a digest
of its weights, so random and torchvision inits and BatchNorm re-estimation are covered too), the images (data
identity without the label split, image shape, a digest of the labels), the probed layer and the evaluation
transform. Fractions, split seeds and probes of one encoder therefore share one entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from ssl_lightning.atomic import write_json, write_torch
from ssl_lightning.file_hash import file_sha256
from ssl_lightning.stages.pretext_store import acquire_or_wait, config_key, sweep_stale_temps

log = logging.getLogger(__name__)
FILE_NAME = "features.pt"
ARRAYS = ("train", "test", "train_labels", "test_labels")
# Data settings that only choose the label split, never which pixels an image has.
SPLIT_ONLY = ("fraction", "split_seed", "val_seed", "val_split", "val_per_label", "balance", "labels_per_class")
# The one evaluation transform of the suite: uint8 -> [0, 1] -> [-1, 1] (data.augment.standardize), no augmentation.
EVAL_TRANSFORM = "uint8/255*2-1"


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and bytes (the encoder's identity by content)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def image_identity(data_identity: dict[str, Any], train_shape: tuple[int, ...], test_shape: tuple[int, ...],
                   train_labels: torch.Tensor, test_labels: torch.Tensor) -> dict[str, Any]:
    """The data identity without its label-split settings, plus shapes and a digest of the labels."""
    labels = hashlib.sha256(np.ascontiguousarray(train_labels.numpy()).tobytes()
                            + b"|" + np.ascontiguousarray(test_labels.numpy()).tobytes()).hexdigest()
    kept = {name: value for name, value in data_identity.items() if name not in SPLIT_ONLY}
    return {**kept, "train_shape": list(train_shape), "test_shape": list(test_shape), "labels_sha256": labels}


def feature_key(encoder: dict[str, Any], images: dict[str, Any], layer: int | str, transform: dict[str, Any]) -> str:
    return config_key({"store": "features", "encoder": encoder, "images": images, "layer": layer,
                       "transform": transform})


@dataclass
class CachedFeatures:
    key: str
    arrays: dict[str, torch.Tensor]  # ARRAYS
    reused: bool
    seconds: float  # loading or computing, waiting for another job included


class FeatureStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def folder(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"))

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        """The stored arrays, or None when absent or corrupt (a corrupt entry is removed)."""
        folder = self.folder(key)
        path, meta_path = folder / FILE_NAME, folder / "meta.json"
        if not meta_path.is_file() or not path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):  # e.g. `null`: damaged like a bad checksum
                raise ValueError("meta.json is not a JSON object")
            if file_sha256(path) != meta.get("sha256"):
                raise ValueError("checksum mismatch")
            arrays = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(arrays, dict) or set(arrays) != set(ARRAYS):
                raise ValueError(f"expected arrays {list(ARRAYS)}")
        except (ValueError, OSError, RuntimeError, json.JSONDecodeError) as error:
            log.warning("feature store entry %s is corrupt (%s): removing it and recomputing", key, error)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return arrays

    def save(self, key: str, arrays: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Write the tensors, then meta.json with their checksum: an entry without meta.json is unfinished."""
        folder = self.folder(key)
        sweep_stale_temps(self.root, key)  # a killed save's `.features.pt.*.tmp` (hundreds of MB) goes
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE_NAME
        write_torch(path, {name: arrays[name].contiguous() for name in ARRAYS})
        shapes = {name: list(arrays[name].shape) for name in ARRAYS}
        write_json(folder / "meta.json", {**meta, "key": key, "shapes": shapes, "sha256": file_sha256(path)})

    def get(self, key: str, compute: Callable[[], dict[str, torch.Tensor]], meta: dict[str, Any]) -> CachedFeatures:
        """The entry for `key`, computed and stored under the key's lock when absent or corrupt."""
        started = time.perf_counter()
        lock = self.lock(key)
        acquire_or_wait(lock, "computing features", key)
        try:
            arrays = self.load(key)
            if arrays is not None:
                log.info("reusing features %s (%s)", key, self.folder(key))
                return CachedFeatures(key, arrays, True, time.perf_counter() - started)
            log.info("computing features %s", key)
            arrays = compute()
            self.save(key, arrays, meta)
            return CachedFeatures(key, arrays, False, time.perf_counter() - started)
        finally:
            lock.release()
