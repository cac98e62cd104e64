"""Writers for the real on-disk formats of the data sets, so loader tests read files laid out like the originals."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX layout: big-endian magic (0x0000080N, N = number of dimensions), one big-endian uint32 per dim, data."""
    magic = {1: IDX_LABELS_MAGIC, 3: IDX_IMAGES_MAGIC}[array.ndim]
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", dim) for dim in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fashion_mnist(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    """The four Fashion-MNIST files, gzipped like the published ones (or plain, as after `gunzip`)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FASHION_FILES.items():
        payload = idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / stem).write_bytes(payload)


def write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """One CIFAR-10 python batch: dict with bytes keys, data N x 3072 (R, G, B planes, row-major), protocol 2."""
    batch = {
        b"batch_label": b"testing batch",
        b"labels": list(labels),
        b"data": np.ascontiguousarray(images.reshape(len(images), 3 * 32 * 32), dtype=np.uint8),
        b"filenames": [f"image_{i}.png".encode() for i in range(len(images))],
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar_meta(path: Path, names: list[str]) -> None:
    meta = {b"num_cases_per_batch": 10000, b"label_names": [name.encode() for name in names], b"num_vis": 3072}
    path.write_bytes(pickle.dumps(meta, protocol=2))


def write_stl10_images(path: Path, images: np.ndarray) -> None:
    """STL-10 binary: uint8, each image channel by channel, each channel column-major (N, C, W, H)."""
    path.write_bytes(np.ascontiguousarray(images.transpose(0, 1, 3, 2), dtype=np.uint8).tobytes())


def write_stl10_labels(path: Path, labels: np.ndarray) -> None:
    """STL-10 labels are stored 1..10."""
    path.write_bytes((np.asarray(labels) + 1).astype(np.uint8).tobytes())


def write_png(path: Path, value: int | tuple[int, int, int], size: int = 12, gray: bool = False) -> None:
    """A uniformly filled PNG (uniform, so resizing keeps the value and the image stays identifiable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if gray:
        Image.new("L", (size, size), int(value)).save(path)  # type: ignore[arg-type]
    else:
        Image.new("RGB", (size, size), tuple(value)).save(path)  # type: ignore[arg-type]
