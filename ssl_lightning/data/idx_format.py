"""Reader for the IDX files of (Fashion-)MNIST, plain or gzipped, without torchvision's integrity checks."""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import numpy as np

_UBYTE = 0x08


@lru_cache(maxsize=8)
def _file_bytes(path: Path, size: int, modified_ns: int) -> bytes:
    """The file's (decompressed) bytes, kept per process: the cells of one sweep run in one process (Hydra's basic
    launcher), and gunzipping the 60,000 training images cost about 1.3 s of each cell. Size and mtime are part of
    the key, so a file replaced on disk is read again."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return handle.read()


def read_idx(path: Path) -> np.ndarray:
    """Read an unsigned-byte IDX file (magic 0x0000080N) into an array of shape given by its header."""
    status = path.stat()
    raw = _file_bytes(path, status.st_size, status.st_mtime_ns)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _UBYTE:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(bytearray(raw), dtype=np.uint8, offset=header_end)  # writable: tensors may be changed
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)
