"""The test-set embeddings a cell was evaluated with, saved beside results.json for the report's 2-D maps.

`embeddings.npz` holds `features` (float16, N x feature_dim: the encoder's output, the classifier head's input),
`labels` (int64), `indices` (into the test split) and `classes`; N is a seeded subsample of at most
`MAX_IMAGES` test images, the same for every method and seed of a
given data set and split seed, so maps are comparable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ssl_lightning.atomic import write_npz
from ssl_lightning.data.augment import standardize, to_unit_float
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.mapped_images import take
from ssl_lightning.models.backbones import Encoder

MAX_IMAGES = 5000
FILE_NAME = "embeddings.npz"


def subsample(count: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most `limit` of `count` items, drawn with `seed`."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


@torch.no_grad()
def embed(encoder: Encoder, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Encoder features of uint8 images, in eval mode, on the encoder's device, with the classifier's scaling."""
    device = next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    try:
        parts = [encoder(standardize(to_unit_float(images[start:start + batch_size].to(device)))).float().cpu()
                 for start in range(0, len(images), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0, encoder.feature_dim)


def save_test_embeddings(encoder: Encoder, images: ImageSet, run_dir: Path, seed: int, batch_size: int = 512,
                         limit: int = MAX_IMAGES) -> Path:
    """Write the embeddings of a seeded subsample of the test images (float16) to run_dir/embeddings.npz."""
    path = Path(run_dir) / FILE_NAME
    indices = subsample(len(images.test_labels), limit, seed)
    chosen = torch.as_tensor(indices, dtype=torch.long)
    features = embed(encoder, take(images.test_images, chosen), batch_size).numpy().astype(np.float16)
    arrays = {"features": features, "labels": images.test_labels[chosen].numpy().astype(np.int64),
              "indices": indices, "classes": np.asarray(images.classes, dtype=str)}
    write_npz(path, arrays)
    return path


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features as float32, labels, class names) from an `embeddings.npz`."""
    with np.load(path, allow_pickle=False) as data:
        return data["features"].astype(np.float32), data["labels"], [str(c) for c in data["classes"]]
