"""Unpickling restricted to plain containers and numpy arrays, so a data file cannot run code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("builtins", "bytes"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        return super().find_class(module, name)


def load_pickle(path: Path) -> Any:
    """Load a pickle file that may only hold dicts, lists, strings, numbers and numpy arrays."""
    with open(path, "rb") as handle:
        return _RestrictedUnpickler(handle, encoding="bytes").load()
