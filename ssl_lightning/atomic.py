"""Write-then-rename helpers: a reader never sees a half-written file, even after a SIGKILL."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _replace_from_temp(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def strict(data: Any) -> Any:
    """`data` with every non-finite float (NaN, inf; numpy's too) as None and numpy scalars as Python numbers:
    JSON has no NaN, and a bare `NaN` in results.json breaks every strict reader (jq, JavaScript, pandas' engines).
    Readers take null as "missing"."""
    if isinstance(data, dict):
        return {key: strict(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [strict(value) for value in data]
    if isinstance(data, bool):
        return data
    if hasattr(data, "item") and getattr(data, "shape", None) == ():  # numpy scalar, 0-d array or tensor
        data = data.item()
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    return data


def write_json(path: Path, data: Any) -> None:
    """Strict JSON (non-finite floats as null, `strict`), written whole or not at all."""
    text = json.dumps(strict(data), indent=2, sort_keys=False, default=str, allow_nan=False) + "\n"
    _replace_from_temp(Path(path), lambda stream: stream.write(text.encode()))


def write_torch(path: Path, obj: Any) -> None:
    _replace_from_temp(Path(path), lambda stream: torch.save(obj, stream))


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """numpy arrays in one compressed .npz file."""
    import numpy as np

    _replace_from_temp(Path(path), lambda stream: np.savez_compressed(stream, **arrays))
