"""Write-then-rename helpers: a reader never sees a half-written file, even after a SIGKILL."""

from __future__ import annotations

import json
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


def write_json(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"
    _replace_from_temp(Path(path), lambda stream: stream.write(text.encode()))


def write_torch(path: Path, obj: Any) -> None:
    _replace_from_temp(Path(path), lambda stream: torch.save(obj, stream))


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """numpy arrays in one compressed .npz file."""
    import numpy as np

    _replace_from_temp(Path(path), lambda stream: np.savez_compressed(stream, **arrays))
