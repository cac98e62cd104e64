"""A resume checkpoint that cannot be read is set aside, so the stage restarts instead of failing forever.

Lightning resumes from `last.ckpt` when it exists; a truncated or otherwise unreadable file (a full disk, a copy
cut short) made every rerun fail with the same OSError until someone deleted it by hand. Checkpoints are written
atomically (trainer_factory.AtomicCheckpointIO), so this is rare, but then the file is renamed to
`last.ckpt.unreadable-<time>` (kept for inspection, said in the log) and the stage starts from scratch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

log = logging.getLogger("ssl_lightning")


def readable(path: Path) -> str | None:
    """None when torch can load the checkpoint, else the reason it cannot."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure to deserialize means Lightning would fail the same way
        return f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
    return None


def usable_resume(path: Path) -> Path:
    """`path` unchanged; an unreadable file there is renamed away first (so `path.is_file()` is then False)."""
    path = Path(path)
    if not path.is_file():
        return path
    reason = readable(path)
    if reason is None:
        return path
    aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
    path.replace(aside)
    log.warning("resume checkpoint %s is unreadable (%s): set aside as %s; the stage restarts from scratch",
                path, reason, aside.name)
    return path
