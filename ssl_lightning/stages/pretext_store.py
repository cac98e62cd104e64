"""Content-addressed store of finished pretext encoders, shared by every cell of a sweep.

An entry is `<root>/<key>/encoder.pt` (a plain state dict, loaded with weights_only=True) and
`meta.json` (its sha256 and what produced it). Entries are written atomically; a file lock per key
makes parallel sweep jobs, also on different nodes of a shared file system, wait for the one that
trains instead of training twice. A corrupt entry fails its checksum, is removed and retrained.
Temporary files a killed writer left (`.<name>.*.tmp`, ssl_lightning/atomic.py) are swept when the entry is
written again (under its lock, so no live writer owns them) and, in other entries, once an hour old.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from ssl_lightning.atomic import write_json, write_torch
from ssl_lightning.file_hash import file_sha256

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
STALE_TEMP_SECONDS = 3600  # a live writer's temporary file grows as it writes: an hour unchanged is a dead one
TEMP_GLOB = ".*.tmp"  # atomic.py's temporary names


def config_key(parts: dict[str, Any]) -> str:
    """A short stable hash of the settings that determine a result."""
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StoreEntry:
    key: str
    folder: Path

    @property
    def encoder_path(self) -> Path:
        return self.folder / "encoder.pt"

    @property
    def meta_path(self) -> Path:
        return self.folder / "meta.json"

    @property
    def events_dir(self) -> Path:
        """TensorBoard events of the run that trained it, copied into every cell that reuses it."""
        return self.folder / "tb"

    @property
    def partial_dir(self) -> Path:
        """Checkpoints of an unfinished pretext run, for resuming after a kill."""
        return self.folder.parent / f"{self.key}.partial"


class PretextStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def entry(self, key: str) -> StoreEntry:
        return StoreEntry(key, self.root / key)

    def lock(self, key: str) -> FileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"))

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The stored encoder state and its metadata, or None when absent or corrupt (then removed)."""
        entry = self.entry(key)
        if not entry.meta_path.is_file() or not entry.encoder_path.is_file():
            return None
        try:
            meta = json.loads(entry.meta_path.read_text())
            if not isinstance(meta, dict):  # e.g. `null`: damaged like a bad checksum
                raise ValueError("meta.json is not a JSON object")
            if file_sha256(entry.encoder_path) != meta.get("sha256"):
                raise ValueError("checksum mismatch")
            state = torch.load(entry.encoder_path, map_location="cpu", weights_only=True)
        except (ValueError, OSError, RuntimeError, json.JSONDecodeError) as error:
            log.warning("pretext store entry %s is corrupt (%s): removing it and retraining", key, error)
            shutil.rmtree(entry.folder, ignore_errors=True)
            return None
        return state, meta

    def save(self, key: str, state: dict[str, torch.Tensor], meta: dict[str, Any], events_from: Path | None) -> None:
        """Write encoder, events, then meta.json last: an entry without meta.json is not finished."""
        entry = self.entry(key)
        sweep_stale_temps(self.root, key)
        entry.folder.mkdir(parents=True, exist_ok=True)
        write_torch(entry.encoder_path, state)
        if events_from is not None and events_from.is_dir():
            shutil.rmtree(entry.events_dir, ignore_errors=True)
            shutil.copytree(events_from, entry.events_dir)
        write_json(entry.meta_path, {**meta, "key": key, "sha256": file_sha256(entry.encoder_path)})
        shutil.rmtree(entry.partial_dir, ignore_errors=True)


def sweep_stale_temps(root: Path, key: str) -> None:
    """Under `key`'s lock: every temporary file in its entry is a killed writer's (a live one would hold the lock);
    in the other entries, those unchanged for STALE_TEMP_SECONDS. Called by both stores before they write."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for path in Path(root).glob(f"*/{TEMP_GLOB}"):
        try:
            if path.parent.name == key or path.stat().st_mtime < cutoff:
                path.unlink()
                log.warning("removed %s, left by an interrupted write", path)
        except OSError:  # gone already (another job swept it) or not ours to remove
            continue


def acquire_or_wait(lock: FileLock, what: str, key: str) -> None:
    """Take a store entry's lock; when another job holds it, say so once and wait for that job to finish it."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another job is %s %s: waiting for it", what, key)
        lock.acquire()
