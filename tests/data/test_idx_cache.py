"""The IDX reader keeps a file's bytes per process (a sweep's cells share one process), without sharing arrays."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from ssl_lightning.data.idx_format import read_idx
from tests.data.writers import idx_bytes


def _write(path: Path, array: np.ndarray) -> None:
    path.write_bytes(gzip.compress(idx_bytes(array)))


def test_a_second_read_gives_an_equal_array_that_is_not_the_first(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte.gz"
    original = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write(path, original)
    first = read_idx(path)
    first[0, 0, 0] = 200  # a caller changing its array in place must not change what the next cell reads
    second = read_idx(path)
    np.testing.assert_array_equal(second, original)
    assert second.flags.writeable


def test_a_file_replaced_on_disk_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "labels-idx1-ubyte.gz"
    _write(path, np.zeros(5, dtype=np.uint8))
    assert read_idx(path).sum() == 0
    _write(path, np.full(6, 3, dtype=np.uint8))
    stamp = path.stat().st_mtime_ns + 1_000_000_000  # a new mtime even on coarse file-system clocks
    os.utime(path, ns=(stamp, stamp))
    np.testing.assert_array_equal(read_idx(path), np.full(6, 3, dtype=np.uint8))
