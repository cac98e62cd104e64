"""Stored work is keyed by the images themselves (issue 32, item 1): overwrite a folder's PNGs (same names, sizes,
labels) or the images a manifest lists (CSV unchanged) and the feature store, the pretext store and the cell's work
folder get new keys; leave them alone and every key stays, so the stores are still reused."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_lightning.config.identity import images_identity, pretext_data_identity
from ssl_lightning.data import load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.mapped_images import RowView, ShardedImages
from ssl_lightning.data.pixel_digest import pixel_digest
from ssl_lightning.data.pretext_sources import assemble
from tests.conftest import run_entry
from tests.helpers import log_text

CLASSES = ("a", "b")


def write_tree(root: Path, seed: int, per_class: int = 12, size: int = 8) -> list[Path]:
    """Flat class folders of noisy PNGs; the same names and sizes for every seed, other pixels."""
    rng = np.random.default_rng(seed)
    paths = []
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            pixels = np.clip(60 + 120 * index + rng.integers(-50, 50, (size, size, 3)), 0, 255).astype(np.uint8)
            path = root / name / f"{k:03d}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    return paths


def overwrite(root: Path, seed: int) -> None:
    time.sleep(0.02)  # past the file system's timestamp granularity: a user's rewrite comes later than this
    write_tree(root, seed)


def _config(tmp_path: Path, **values) -> DataConfig:
    return DataConfig(image_cache=str(tmp_path / "cache" / "images"), **values)


def _keys(config: DataConfig) -> tuple[dict, dict]:
    images = load_dataset(config)
    pool = np.arange(len(images.train_labels))
    pretext = assemble(images, pool[2:], pool[:2], {"target": None}, {}, images.channels)
    return images_identity(images), pretext_data_identity(pretext, images.train_labels)


def test_a_tensor_digest_sees_one_pixel():
    images = torch.zeros(4, 1, 3, 3, dtype=torch.uint8)
    changed = images.clone()
    changed[3, 0, 2, 2] = 1
    assert pixel_digest(images) == pixel_digest(images.clone()) != pixel_digest(changed)
    assert pixel_digest(images) != pixel_digest(images.reshape(4, 1, 9, 1))  # the shape is part of it


def test_overwritten_pngs_change_every_key_and_untouched_ones_none(tmp_path):
    root = tmp_path / "tiles"
    write_tree(root, seed=0)
    config = _config(tmp_path, name="imagefolder", root=str(root))
    first, first_pretext = _keys(config)
    again, again_pretext = _keys(config)
    assert (first, first_pretext) == (again, again_pretext)  # nothing changed: the stores are reused
    assert set(first) == {"train_pixels", "test_pixels", "train_labels", "test_labels"}

    overwrite(root, seed=1)
    second, second_pretext = _keys(config)
    assert second["train_pixels"] != first["train_pixels"] and second["test_pixels"] != first["test_pixels"]
    assert second["train_labels"] == first["train_labels"]  # same labels: the pixels alone changed the key
    assert second_pretext["pixels"] != first_pretext["pixels"]
    assert second_pretext["sources"] == first_pretext["sources"]  # the settings are the same


def test_store_backed_images_are_named_by_their_image_store_key_not_read(tmp_path):
    root = tmp_path / "tiles"
    write_tree(root, seed=0)
    images = load_dataset(_config(tmp_path, name="imagefolder", root=str(root)))
    assert isinstance(images.train_images, RowView) and isinstance(images.train_images.base, ShardedImages)
    digest = pixel_digest(images.train_images)
    for shard in images.train_images.base.folder.glob("shard_*.npy"):  # not read: the store key names them
        shard.write_bytes(b"")
    assert pixel_digest(images.train_images) == digest


def test_a_manifest_with_the_same_csv_over_new_images_changes_the_keys(tmp_path):
    paths = write_tree(tmp_path / "tiles", seed=0)
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["path", "label"])
        writer.writerows([[str(path), path.parent.name] for path in paths])
    config = _config(tmp_path, name="manifest", manifest=str(manifest))
    first, first_pretext = _keys(config)
    text = manifest.read_bytes()
    overwrite(tmp_path / "tiles", seed=1)
    assert manifest.read_bytes() == text
    second, second_pretext = _keys(config)
    assert second["train_pixels"] != first["train_pixels"]
    assert second_pretext["pixels"] != first_pretext["pixels"]


def test_raw_pixel_features_are_recomputed_after_the_pngs_change(tmp_path):
    """The reproduction: the same command over the same folder, its PNGs overwritten in between."""
    root = tmp_path / "tiles"
    write_tree(root, seed=0)
    command = ["+experiment=raw_pixels", "downstream=linear", "data=imagefolder", f"data.root={root}",
               "profile=smoke"]
    done = run_entry(command, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    first_log = log_text(tmp_path / "run")
    assert "computing features" in first_log
    overwrite(root, seed=1)
    done = run_entry(command, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    second_log = log_text(tmp_path / "run")[len(first_log):] or log_text(tmp_path / "run")
    assert "reusing features" not in second_log and "computing features" in second_log
