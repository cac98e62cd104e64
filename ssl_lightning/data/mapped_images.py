"""Image collections read on demand: one gather per index batch, never the whole collection in memory.

A folder decoded into the image store is kept on disk as uint8 shards; `ShardedImages` maps them and
gathers the rows of one batch. Views (`RowView`), channel expansion, resizing and unions of several sources
(`ConcatImages`) stay lazy as well, so a pretext union with an ImageNet-sized folder costs no anonymous
memory. `take(images, rows)` works on these and on ordinary in-memory tensors (the built-in data sets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def _as_rows(rows: Any, length: int) -> np.ndarray:
    """Index positions as an int64 array; accepts slices, ints, lists, numpy arrays and tensors."""
    if isinstance(rows, slice):
        return np.arange(length, dtype=np.int64)[rows]
    if isinstance(rows, torch.Tensor):
        rows = rows.cpu().numpy()
    array = np.asarray(rows)
    if array.dtype == bool:
        return np.flatnonzero(array).astype(np.int64)
    array = array.astype(np.int64, copy=False).reshape(-1)
    return np.where(array < 0, array + length, array)


class LazyImages:
    """uint8 N x C x H x W images; `take(rows)` returns one batch as a tensor, `[rows]` a lazy view."""

    shape: tuple[int, int, int, int]
    dtype = torch.uint8

    def __len__(self) -> int:
        return int(self.shape[0])

    def take(self, rows: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, rows: Any) -> LazyImages:
        if isinstance(rows, (int, np.integer)):
            raise TypeError("index a lazy image collection with an array or slice; use take() for pixels")
        return RowView(self, _as_rows(rows, len(self)))

    def numpy(self) -> np.ndarray:
        """Every image in memory: for small collections and tests only."""
        return self.take(np.arange(len(self))).numpy()


class ShardedImages(LazyImages):
    """The image store's `.npy` shards (equal rows per shard, the last one shorter), memory-mapped read-only."""

    def __init__(self, folder: Path, shard_names: list[str], per_shard: int, shape: tuple[int, int, int, int]):
        self.folder, self.shard_names, self.per_shard = Path(folder), list(shard_names), int(per_shard)
        self.shape = tuple(int(v) for v in shape)  # type: ignore[assignment]
        self._maps: dict[int, np.ndarray] = {}

    def _shard(self, index: int) -> np.ndarray:
        if index not in self._maps:
            self._maps[index] = np.load(self.folder / self.shard_names[index], mmap_mode="r")
        return self._maps[index]

    def take(self, rows: np.ndarray) -> torch.Tensor:
        rows = _as_rows(rows, len(self))
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        shard_of, local = np.divmod(rows, self.per_shard)
        for shard in np.unique(shard_of):
            chosen = np.flatnonzero(shard_of == shard)
            out[chosen] = self._shard(int(shard))[local[chosen]]
        return torch.from_numpy(out)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (spawned DataLoader workers) as paths: each process maps the shards itself."""
        return {**self.__dict__, "_maps": {}}


class RowView(LazyImages):
    def __init__(self, base: LazyImages, rows: np.ndarray):
        self.base, self.rows = base, rows
        self.shape = (len(rows), *base.shape[1:])  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> torch.Tensor:
        return self.base.take(self.rows[_as_rows(rows, len(self))])


class ExpandChannels(LazyImages):
    """Grey images served as RGB (a union of grey and colour sources)."""

    def __init__(self, base: LazyImages, channels: int):
        self.base = base
        self.shape = (base.shape[0], channels, *base.shape[2:])  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> torch.Tensor:
        return self.base.take(rows).expand(-1, self.shape[1], -1, -1).contiguous()


class ResizedImages(LazyImages):
    """Images of another source resized per batch (stores are normally built at the right size already)."""

    def __init__(self, base: LazyImages, size: tuple[int, int]):
        self.base, self.size = base, (int(size[0]), int(size[1]))
        self.shape = (*base.shape[:2], *self.size)  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> torch.Tensor:
        batch = self.base.take(rows).float()
        batch = F.interpolate(batch, size=self.size, mode="bilinear", antialias=True, align_corners=False)
        return batch.round().clamp(0, 255).to(torch.uint8)


class ConcatImages(LazyImages):
    """Several sources (lazy or in-memory tensors) as one index space, without concatenating their pixels."""

    def __init__(self, parts: list[torch.Tensor | LazyImages]):
        shapes = {tuple(part.shape[1:]) for part in parts}
        if len(shapes) != 1:
            raise ValueError(f"cannot concatenate images of shapes {sorted(shapes)}")
        self.parts = parts
        self.starts = np.cumsum([0, *[len(part) for part in parts]])
        self.shape = (int(self.starts[-1]), *next(iter(shapes)))  # type: ignore[assignment]

    def take(self, rows: np.ndarray) -> torch.Tensor:
        rows = _as_rows(rows, len(self))
        out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        part_of = np.searchsorted(self.starts, rows, side="right") - 1
        for part in np.unique(part_of):
            chosen = np.flatnonzero(part_of == part)
            out[torch.from_numpy(chosen)] = take(self.parts[int(part)], rows[chosen] - self.starts[part])
        return out


def take(images: torch.Tensor | LazyImages, rows: Any) -> torch.Tensor:
    """One batch of pixels as a contiguous uint8 tensor, from memory or from the store."""
    if isinstance(images, LazyImages):
        return images.take(rows)
    return images[torch.as_tensor(rows, dtype=torch.long)].contiguous()


def concatenate(parts: list[torch.Tensor | LazyImages]) -> torch.Tensor | LazyImages:
    """In-memory parts are concatenated as before; any store-backed part keeps the union lazy."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(part, torch.Tensor) for part in parts):
        return torch.cat(parts)  # type: ignore[arg-type]
    return ConcatImages(parts)
