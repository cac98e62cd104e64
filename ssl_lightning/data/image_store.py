"""Content-addressed store of decoded image folders: decode once, in parallel, then read through memory maps.

An entry `<cache>/images/<key>/` holds the pixels as fixed-size uint8 `.npy` shards (rows x C x H x W),
`labels.npy`, `files.json` (paths relative to the folder's root, in row order) and `manifest.json`
(shape, shard sizes and sampled checksums, skipped files), written last. The key hashes everything that
changes the pixels: every file's relative path, size and modification time, the labels, the image size, the
channel count, the include glob and the decoder. Entries are built in a temporary folder and renamed, under a
file lock per key, so cells started together and DDP ranks wait for one builder and then share its entry.
An entry whose shards fail their size or checksum is removed and rebuilt; so is one whose labels, kept rows or file
list fail the sha256 recorded at build time, whose label counts differ from the manifest's, or whose labels are not
the labels the request asks for (the run would otherwise train on wrong labels).

Faults during a build: decode workers die with the builder (Linux parent-death signal, SIGTERM turns into a clean
exit that removes the temporary folder), a stale `<key>.tmp-*` left by a killed builder is removed by the next build
of that key, and a full disk is one line naming it (shards are reserved with posix_fallocate before decoding).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock

from ssl_lightning.atomic import write_json
from ssl_lightning.data.image_decode import DECODE_ERRORS, DECODER, GRAY_MODES, decode_file, read_header
from ssl_lightning.data.mapped_images import ShardedImages
from ssl_lightning.errors import UserError

log = logging.getLogger(__name__)
FORMAT_VERSION = 2  # 2: checksums of labels, kept rows and file list; label counts; pixel limit
SHARD_BYTES = 256 << 20  # rows per shard = this / bytes per image
CHUNK = 64  # images per decode task
_SAMPLE = 1 << 16  # bytes per sampled block of a shard checksum
SERVED = ("labels.npy", "kept.npy", "files.json")  # small files verified in full on every open


@dataclass(frozen=True)
class StoreRequest:
    """Which files become one entry, in row order, and how they are decoded."""

    root: Path
    files: Sequence[Path]
    labels: np.ndarray | None
    image_size: int | None
    channels: int | None  # None: 1 when every image is grey, else 3
    include: str | None
    on_bad_image: str = "error"
    decode_workers: int | None = None
    max_pixels: int | None = None  # data.max_image_pixels: larger images are bad images


@dataclass
class StoredImages:
    images: ShardedImages
    labels: np.ndarray  # int64, one per kept image (zeros when the request had none)
    files: list[str]  # relative to the request's root
    kept: np.ndarray  # positions in the request's file list that were kept
    key: str
    built: bool  # False when an existing entry was reused


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def store_key(request: StoreRequest) -> str:
    """Hash of the file list (relative path, size, mtime), labels and decode settings."""
    digest = hashlib.sha256()
    root = Path(request.root).expanduser().resolve()
    header = {"format": FORMAT_VERSION, "decoder": DECODER, "root": str(root), "image_size": request.image_size,
              "channels": request.channels, "include": request.include, "count": len(request.files),
              "max_pixels": request.max_pixels}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for path in request.files:
        stat = os.stat(path)
        digest.update(f"\n{Path(path).resolve().relative_to(root)}\t{stat.st_size}\t{stat.st_mtime_ns}".encode())
    if request.labels is not None:
        digest.update(np.ascontiguousarray(request.labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:20]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _label_counts(labels: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    return {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)}


def _verify_served(folder: Path, manifest: dict[str, Any], request: StoreRequest, labels: np.ndarray,
                   kept: np.ndarray) -> None:
    """Labels, kept rows and file list against their build-time sha256 and counts, and against the request."""
    for name in SERVED:
        if _sha256(folder / name) != manifest["served"][name]:
            raise ValueError(f"{name} fails its checksum")
    if _label_counts(labels) != manifest["label_counts"]:
        raise ValueError("the label counts differ from the manifest's")
    if request.labels is not None:
        expected = np.asarray(request.labels, dtype=np.int64)
        if len(kept) and (kept.max() >= len(expected) or not np.array_equal(expected[kept], labels)):
            raise ValueError("the labels are not those of the requested files")


def _sampled_checksum(path: Path) -> str:
    """sha256 of the size and of 10 evenly spread 64 KiB blocks: cheap for 200 GB, catches truncation and swaps."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as stream:
        for offset in sorted({int(k * max(size - _SAMPLE, 0) / 9) for k in range(10)}):
            stream.seek(offset)
            digest.update(stream.read(_SAMPLE))
    return digest.hexdigest()


class ImageStore:
    """`<cache>/images`: open an entry for a request, building it first when absent or corrupt."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def open(self, request: StoreRequest) -> StoredImages:
        started = time.perf_counter()
        key = store_key(request)
        folder = self.root / key
        stored = self._load(folder, key, request)
        if stored is not None:
            log.info("image store %s: %d images reused (key and checks took %.1f s)", key, len(stored.images),
                     time.perf_counter() - started)
            return stored
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self.root / f"{key}.lock"
        with FileLock(str(lock)):
            try:
                stored = self._load(folder, key, request, remove_corrupt=True)
                if stored is not None:  # another cell or rank built it while we waited
                    return stored
                remove_stale_builds(self.root, key, lock)
                _build(request, folder, key)
                stored = self._load(folder, key, request, quiet=True)
            finally:  # no lock file left behind; a peer blocked on it notices the unlink and opens a fresh one
                lock.unlink(missing_ok=True)
        if stored is None:
            raise RuntimeError(f"image store entry {folder} failed its check right after it was built")
        stored.built = True
        return stored

    def _load(self, folder: Path, key: str, request: StoreRequest, remove_corrupt: bool = False,
              quiet: bool = False) -> StoredImages | None:
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            for shard in manifest["shards"]:
                path = folder / shard["name"]
                if path.stat().st_size != shard["bytes"] or _sampled_checksum(path) != shard["checksum"]:
                    raise ValueError(f"{shard['name']} fails its size or checksum")
            labels = np.load(folder / "labels.npy")
            files = json.loads((folder / "files.json").read_text())
            kept = np.load(folder / "kept.npy")
            images = ShardedImages(folder, [s["name"] for s in manifest["shards"]], manifest["per_shard"],
                                   tuple(manifest["shape"]))
            if len(labels) != len(images) or len(files) != len(images):
                raise ValueError("labels, files and pixels disagree in length")
            _verify_served(folder, manifest, request, labels, kept)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
            if not remove_corrupt:
                return None
            log.warning("image store entry %s is corrupt (%s): removing it and decoding again", key, error)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        if manifest["skipped"] and request.on_bad_image == "error":
            first = Path(request.root) / manifest["skipped"][0]
            raise UserError(f"cannot read image {first} ({manifest['skipped_reasons'][0]}); "
                            "remove it or set data.on_bad_image=skip")
        if manifest["skipped"] and not quiet:
            log.warning("skipped %d unreadable image(s) (data.on_bad_image=skip)", len(manifest["skipped"]))
        return StoredImages(images, labels, files, kept, key, built=False)


def remove_stale_builds(root: Path, key: str, lock: Path) -> None:
    """Under the key's lock: `<key>.tmp-*` folders older than the lock are left by a killed builder (a live
    builder would hold the lock), so they are removed. The lock's time is refreshed first: it is the moment we
    took it."""
    os.utime(lock)
    taken = lock.stat().st_mtime
    for stale in root.glob(f"{key}.tmp-*"):
        try:
            if stale.stat().st_mtime < taken:
                shutil.rmtree(stale, ignore_errors=True)
                log.warning("image store: removed %s, left by an interrupted build", stale.name)
        except OSError:
            continue


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """Decode worker start: killed when the builder dies (even by SIGKILL), default SIGTERM, SIGINT left to it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the SIGTERM path still cleans up
            pass
    if os.getppid() == 1:  # the builder died before prctl took effect
        os._exit(1)


def _pool(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_die_with_parent)


def _stop_pool(pool: Executor | None, failed: bool) -> None:
    """Shut the pool down; after a failure or a signal its workers are terminated, not waited for."""
    if pool is None:
        return
    if failed:
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
    pool.shutdown(wait=not failed, cancel_futures=True)


class _Terminated(SystemExit):
    """SIGTERM during a build: unwinds like an exit so the temporary folder and the workers are cleaned up."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated(128 + signum)


def _headers(paths: list[str], max_pixels: int | None = None) -> list[tuple[str, tuple[int, int]] | str]:
    return [read_header(path, max_pixels) for path in paths]


def _decode_into(shard: str, start: int, paths: list[str], mode: str, size: tuple[int, int],
                 resize: bool) -> list[tuple[int, str]]:
    """Decode `paths` into rows start.. of a shard file; returns (row, reason) of the images that failed."""
    rows = np.load(shard, mmap_mode="r+")
    failed = []
    for offset, path in enumerate(paths):
        try:
            rows[start + offset] = decode_file(path, mode, size, resize)
        except DECODE_ERRORS as error:
            failed.append((start + offset, error.__class__.__name__))
    rows.flush()
    del rows
    return failed


def _run(pool: Executor | None, function, tasks: list[tuple], counts: list[int],
         label: str) -> Iterator[tuple[int, Any]]:
    """(task index, `function(*task)`) in completion order, with a progress line and images/s every few seconds."""
    started = last = time.perf_counter()
    total, done = sum(counts), 0

    def progress(index: int) -> None:
        nonlocal done, last
        done += counts[index]
        now = time.perf_counter()
        if now - last > 5 or done == total:
            last = now
            log.info("image store: %s %d/%d images (%.0f images/s)", label, done, total,
                     done / max(now - started, 1e-9))

    if pool is None:
        for index, task in enumerate(tasks):
            yield index, function(*task)
            progress(index)
        return
    pending: dict[Future, int] = {}
    window = 4 * (getattr(pool, "_max_workers", 2) or 2)  # bounded queue: tasks hold file lists only
    for index, task in enumerate(tasks):
        pending[pool.submit(function, *task)] = index
        while len(pending) >= window or (index == len(tasks) - 1 and pending):
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                position = pending.pop(future)
                yield position, future.result()
                progress(position)


def _build(request: StoreRequest, folder: Path, key: str) -> None:
    """Decode into `<key>.tmp-*` and rename it to `folder`; nothing half-written survives an error."""
    temp = folder.parent / f"{key}.tmp-{uuid.uuid4().hex[:8]}"
    temp.mkdir(parents=True)
    workers = request.decode_workers or available_cores()
    started = time.perf_counter()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        pool = _pool(workers)
        failed = True
        try:
            manifest = _decode_all(request, temp, pool)
            failed = False
        except BrokenProcessPool as error:
            raise _disk_full_error(folder.parent) or UserError(
                f"an image decode worker died ({error}); the system may be out of memory: lower "
                "data.decode_workers or free memory") from None
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise _disk_full_error(folder.parent, force=True) from None
            raise
        finally:
            _stop_pool(pool, failed)
        seconds = time.perf_counter() - started
        count = manifest["shape"][0]
        manifest.update(key=key, seconds=round(seconds, 2), images_per_s=round(count / max(seconds, 1e-9), 1),
                        decode_workers=workers)
        write_json(temp / "manifest.json", manifest)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(temp, folder)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    log.info("image store %s: %d images decoded in %.1f s (%.0f images/s, %d decode worker(s)) into %s",
             key, count, seconds, count / max(seconds, 1e-9), workers, folder)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _disk_full_error(folder: Path, force: bool = False) -> UserError | None:
    """The one-line error for a full disk under the store, or None when the disk has room (another cause)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = 0
    if not force and free >= (64 << 20):
        return None
    return UserError(f"no space left on device for the image store in {folder} ({free / 2**20:.0f} MiB free): "
                     "free some space or set paths.cache to a folder on a bigger disk")


def _decode_all(request: StoreRequest, temp: Path, pool: Executor | None) -> dict[str, Any]:
    root = Path(request.root).expanduser().resolve()
    paths = [str(path) for path in request.files]
    header_tasks = [(paths[s : s + 4 * CHUNK], request.max_pixels) for s in range(0, len(paths), 4 * CHUNK)]
    parts: list[list[Any]] = [[] for _ in header_tasks]
    for index, part in _run(pool, _headers, header_tasks, [len(t[0]) for t in header_tasks], "read headers of"):
        parts[index] = part
    headers = [header for part in parts for header in part]
    skipped: list[tuple[int, str]] = []
    kept: list[int] = []
    for position, header in enumerate(headers):
        if isinstance(header, str):
            skipped.append((position, header))
        else:
            kept.append(position)
    _fail_on_bad(request, paths, skipped)
    if not kept:
        raise UserError(f"no readable images in {root}; check the files and the include glob")
    channels = request.channels or (1 if all(headers[p][0] in GRAY_MODES for p in kept) else 3)
    sizes = {headers[p][1] for p in kept}
    if request.image_size is None and len(sizes) > 1:
        raise UserError(f"images have {len(sizes)} different sizes (e.g. {sorted(sizes)[:3]}); "
                        "set data.image_size=N to resize")
    width, height = (request.image_size, request.image_size) if request.image_size else next(iter(sizes))
    shape = (len(kept), channels, height, width)
    failed = _decode_rows(pool, temp, [paths[p] for p in kept], shape, resize=request.image_size is not None)
    if failed:
        bad = [(kept[row], reason) for row, reason in failed]
        _fail_on_bad(request, paths, bad)
        skipped.extend(bad)
        keep_rows = np.setdiff1d(np.arange(len(kept)), [row for row, _ in failed])
        _compact(temp, shape, keep_rows)
        kept = [kept[row] for row in keep_rows]
        shape = (len(kept), *shape[1:])
    if skipped:
        log.warning("skipped %d unreadable image(s) (data.on_bad_image=skip)", len(skipped))
    skipped.sort()
    labels = (np.zeros(len(paths), dtype=np.int64) if request.labels is None
              else np.asarray(request.labels, dtype=np.int64))[kept]
    np.save(temp / "labels.npy", labels)
    np.save(temp / "kept.npy", np.asarray(kept, dtype=np.int64))
    files = [str(Path(paths[p]).resolve().relative_to(root)) for p in kept]
    write_json(temp / "files.json", files)
    shards = sorted(temp.glob("shard_*.npy"))
    return {"format": FORMAT_VERSION, "served": {name: _sha256(temp / name) for name in SERVED},
            "label_counts": _label_counts(labels), "decoder": DECODER, "root": str(root), "shape": list(shape),
            "per_shard": _rows_per_shard(shape),
            "shards": [{"name": s.name, "bytes": s.stat().st_size, "checksum": _sampled_checksum(s)} for s in shards],
            "skipped": [str(Path(paths[p]).resolve().relative_to(root)) for p, _ in skipped],
            "skipped_reasons": [reason for _, reason in skipped]}


def _fail_on_bad(request: StoreRequest, paths: list[str], bad: list[tuple[int, str]]) -> None:
    if bad and request.on_bad_image == "error":
        position, reason = min(bad)
        raise UserError(f"cannot read image {paths[position]} ({reason}); remove it or set data.on_bad_image=skip")


def _rows_per_shard(shape: Sequence[int]) -> int:
    return max(1, SHARD_BYTES // int(np.prod(shape[1:])))


def _allocate(folder: Path, shape: Sequence[int]) -> list[tuple[Path, int, int]]:
    """Empty shard files; returns (path, first global row, rows) per shard."""
    per_shard = _rows_per_shard(shape)
    shards = []
    for index, first in enumerate(range(0, shape[0], per_shard)):
        rows = min(per_shard, shape[0] - first)
        path = folder / f"shard_{index:05d}.npy"
        np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(rows, *shape[1:])).flush()
        _reserve(path)
        shards.append((path, first, rows))
    return shards


def _reserve(path: Path) -> None:
    """Reserve a sparse shard's blocks now: a full disk is then an ENOSPC here, not a SIGBUS in a worker."""
    if not hasattr(os, "posix_fallocate"):
        return
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, os.fstat(descriptor).st_size)
    except OSError as error:
        if error.errno != errno.ENOSPC:  # e.g. a filesystem without fallocate: the decode writes the blocks
            return
        raise
    finally:
        os.close(descriptor)


def _decode_rows(pool: Executor | None, folder: Path, paths: list[str], shape: Sequence[int],
                 resize: bool) -> list[tuple[int, str]]:
    mode = "L" if shape[1] == 1 else "RGB"
    size = (int(shape[3]), int(shape[2]))
    tasks = []
    for shard, first, rows in _allocate(folder, shape):
        for start in range(0, rows, CHUNK):
            tasks.append((str(shard), start, paths[first + start : first + min(start + CHUNK, rows)], mode, size,
                          resize, first))
    failed: list[tuple[int, str]] = []
    for _, part in _run(pool, _decode_task, tasks, [len(task[2]) for task in tasks], "decoded"):
        failed.extend(part)
    return failed


def _decode_task(shard: str, start: int, paths: list[str], mode: str, size: tuple[int, int], resize: bool,
                 first: int) -> list[tuple[int, str]]:
    return [(first + row, reason) for row, reason in _decode_into(shard, start, paths, mode, size, resize)]


def _compact(folder: Path, shape: Sequence[int], keep_rows: np.ndarray) -> None:
    """Drop the rows of images that failed to decode (rare): copy the kept rows into fresh shards."""
    old = ShardedImages(folder, sorted(p.name for p in folder.glob("shard_*.npy")), _rows_per_shard(shape),
                        tuple(shape))
    fresh = folder / "compact"
    fresh.mkdir()
    new_shape = (len(keep_rows), *shape[1:])
    for path, first, rows in _allocate(fresh, new_shape):
        target = np.load(path, mmap_mode="r+")
        target[:] = old.take(keep_rows[first : first + rows]).numpy()
        target.flush()
        del target
    del old
    for path in folder.glob("shard_*.npy"):
        path.unlink()
    for path in fresh.iterdir():
        os.replace(path, folder / path.name)
    fresh.rmdir()


def as_tensor_labels(stored: StoredImages) -> torch.Tensor:
    return torch.from_numpy(np.asarray(stored.labels, dtype=np.int64))
