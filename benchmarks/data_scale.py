"""Real collections at scale: N JPEG tiles of 224 px decoded once into the image store, then read through maps.

Measures (1) store build images/s with 1 decode worker and with all cores; (2) for the first cell
(rotation, builds the store) and the second cell (simclr, reuses it) of one Hydra multirun: time to the
first training step, peak anonymous memory (RssAnon) during each cell, and the process's peak RSS;
(3) pretext input images/s from the store against the same images in memory and against the conventional
per-sample pipeline decoding the JPEG files in 2 DataLoader workers, as a bare loader and under real
rotation training steps.

    python -m benchmarks.data_scale [--tiny] [--count N] [--folder PATH] [--repeats N]

`--folder` keeps the generated tiles (and reuses them on the next run); otherwise everything lives in a
temporary folder. The cells run `python -m ssl_lightning -m +experiment=rotation,simclr data=imagefolder
profile=smoke` as a user would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import Report, apply_threads, base_parser, print_machine, repeats_from
from benchmarks.figures import Target
from ssl_lightning.data.augment import to_unit_float
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.image_store import ImageStore, StoreRequest, available_cores
from ssl_lightning.data.imagefolder import load as load_imagefolder
from ssl_lightning.data.loading import DROP, IndexedImages, ShardedBatchSampler
from ssl_lightning.data.mapped_images import take
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("adh", "dcis", "normal")
RSS_ANON_TARGET = Target("<=", 3.0)  # GB
SECOND_CELL_TARGET = Target("<=", 10.0)  # s to the first training step
STORE_VS_MEMORY_TARGET = Target(">=", 0.9)
# Notes when each cell (pipeline.run) starts and ends and its first optimizer step, then runs the real entry point.
_CHILD = """
import json, os, runpy, sys, time
from torch.optim.optimizer import register_optimizer_step_pre_hook
import ssl_lightning.stages.pipeline as pipeline
_events = open(os.environ["BENCH_EVENTS"], "a")
def _note(event):
    _events.write(json.dumps({"event": event, "time": time.time()}) + "\\n")
    _events.flush()
_stepped = [False]
def _first(optimizer, args, kwargs):
    if not _stepped[0]:
        _stepped[0] = True
        _note("first_step")
register_optimizer_step_pre_hook(_first)
_run = pipeline.run
def _noted_run(*args, **kwargs):
    _stepped[0] = False
    _note("cell_start")
    try:
        return _run(*args, **kwargs)
    finally:
        _note("cell_end")
pipeline.run = _noted_run
sys.argv = ["ssl_lightning", *sys.argv[1:]]
runpy.run_module("ssl_lightning", run_name="__main__", alter_sys=True)
"""


def _write_tiles(task: tuple[str, int, int, int]) -> None:
    folder, start, stop, size = task
    for index in range(start, stop):
        rng = np.random.default_rng(index)
        cls = CLASSES[index % len(CLASSES)]
        path = Path(folder) / cls / f"patient{index % 7}" / "x40" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        coarse = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8))
        pixels = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.int16)
        pixels = pixels + rng.integers(-20, 21, pixels.shape)  # texture, so JPEG sizes resemble real tiles
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=90)


def make_tiles(folder: Path, count: int, size: int) -> list[Path]:
    """`count` JPEG tiles in the original study's layout (class/patient/x40/), written in parallel; reused."""
    existing = sorted(folder.glob("*/*/x40/*.jpg"))
    if len(existing) != count:
        step = 500
        tasks = [(str(folder), s, min(s + step, count), size) for s in range(0, count, step)]
        with multiprocessing.get_context("fork").Pool(available_cores()) as pool:
            pool.map(_write_tiles, tasks)
        existing = sorted(folder.glob("*/*/x40/*.jpg"))
    return existing


def build_rate(tiles: Path, files: list[Path], cache: Path, workers: int) -> float:
    """images/s of one store build from scratch; the entry is removed afterwards (disk space at 50,000 tiles)."""
    request = StoreRequest(root=tiles, files=files, labels=None, image_size=None, channels=None, include=None,
                           decode_workers=workers)
    started = time.perf_counter()
    stored = ImageStore(cache).open(request)
    seconds = time.perf_counter() - started
    assert stored.built
    del stored
    shutil.rmtree(cache, ignore_errors=True)
    return len(files) / seconds


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _exit_text(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def run_sweep(experiments: list[str], overrides: list[str], work: Path) -> tuple[list[dict[str, float]], float]:
    """One Hydra multirun over `experiments`, as a user runs a grid: per cell, the time from its start to its
    first training step (the first cell from the process start: imports and the store build included), and the
    peak RssAnon during the cell (GB); and the process's peak RSS (GB)."""
    events_path = work / "sweep.events.jsonl"
    command = [sys.executable, "-c", _CHILD, "-m", f"+experiment={','.join(experiments)}", *overrides,
               f"hydra.sweep.dir={work / 'sweep'}", f"paths.cache={work / 'cell_cache'}"]
    env = {**os.environ, "BENCH_EVENTS": str(events_path), "PYTHONUNBUFFERED": "1"}
    log_path = work / "sweep.log"
    samples: list[tuple[float, int]] = []
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                samples.append((time.time(), _status_kb(process.pid, "RssAnon")))
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        poller.join()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise SystemExit(f"error: the sweep failed ({_exit_text(status)}); log {log_path}:\n{tail}")
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    starts = [e["time"] for e in events if e["event"] == "cell_start"]
    ends = [e["time"] for e in events if e["event"] == "cell_end"]
    firsts = [e["time"] for e in events if e["event"] == "first_step"]
    if not (len(starts) == len(ends) == len(firsts) == len(experiments)):
        raise SystemExit(f"error: expected {len(experiments)} cells with a training step each, got events {events}")
    cells = []
    for index, (start, end, first) in enumerate(zip(starts, ends, firsts, strict=True)):
        window_start = started if index == 0 else start
        peak = max((kb for t, kb in samples if window_start <= t <= end), default=0)
        cells.append({"first_step_s": first - window_start, "rss_anon_gb": peak * 1024 / 1e9})
    return cells, usage.ru_maxrss * 1024 / 1e9


class JpegFiles(Dataset):
    """The conventional pipeline: one file decoded with Pillow per __getitem__, collated by the DataLoader."""

    def __init__(self, files: list[Path]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.files[index]) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB")).transpose(2, 0, 1).copy())


def endless(loader):
    while True:
        yield from loader


def loader_rate(loader, batches: int) -> float:
    """images/s over `batches` batches after one warm-up batch (worker start-up excluded)."""
    iterator = endless(loader)
    next(iterator)
    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next(iterator))
    return seen / (time.perf_counter() - started)


def indexed_loader(images, count: int, batch: int) -> DataLoader:
    dataset = IndexedImages(images, None, np.arange(count))
    sampler = ShardedBatchSampler(count, batch, shuffle=True, remainder=DROP, seed=0)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0)


def training_rate(batches, steps: int, size: int) -> float:
    """images/s of real rotation pretext steps (compact backbone) fed by `batches`."""
    torch.manual_seed(0)
    module = RotationPretext(build_encoder(BackboneConfig(name="compact", width=8, stem_stride=2), 3, size),
                             OptimConfig(), epochs=1).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01)
    iterator = endless(batches)

    def step() -> int:
        images = next(iterator)
        loss, _ = module.pretext_step(to_unit_float(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(images)

    step()
    started = time.perf_counter()
    seen = sum(step() for _ in range(steps))
    return seen / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None, help="number of tiles (default 50,000; --tiny: 60)")
    parser.add_argument("--folder", type=Path, default=None, help="keep the tiles here (reused when present)")
    parser.add_argument("--build-sample", type=int, default=5000,
                        help="tiles decoded for the build-rate figures (the first cell still stores all of them)")
    args = parser.parse_args(argv)
    apply_threads(args)
    repeats = repeats_from(args, tiny_default=1, default=1)
    count = args.count or (60 if args.tiny else 50_000)
    size = 32 if args.tiny else 224
    cores = available_cores()
    print_machine(f"data_scale: {count:,} JPEG tiles of {size} px through the image store")
    report = Report("data_scale")
    with tempfile.TemporaryDirectory(prefix="bench_data_scale_") as temp:
        work = Path(temp)
        tiles = (args.folder or work / "tiles").resolve()
        started = time.perf_counter()
        files = make_tiles(tiles, count, size)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        print(f"   tiles: {len(files):,} files, {megabytes:,.0f} MB in {tiles} "
              f"({time.perf_counter() - started:.0f} s to write or find)", flush=True)

        one, many = [], []
        sample = files[: args.build_sample]  # a rate needs no 50,000 images twice; the first cell decodes them all
        for repeat in range(repeats):
            one.append(build_rate(tiles, sample, work / f"build1_{repeat}", 1))
            many.append(build_rate(tiles, sample, work / f"buildN_{repeat}", cores))
            print(f"   build: {one[-1]:.0f} images/s with 1 worker, {many[-1]:.0f} with {cores}", flush=True)
        report.add(f"store build, 1 decode worker ({len(sample):,} tiles)", "images/s", one)
        report.add(f"store build, {cores} decode workers ({len(sample):,} tiles)", "images/s", many)

        overrides = ["data=imagefolder", f"data.root={tiles}", "data.include=**/x40/*.jpg", "data.fraction=0.05",
                     "data.eval_batch_size=64", "profile=smoke", "trainer=cpu",  # 224 px evaluation on CPU: small
                     "data.group_by=none"]  # the tiles' 7 patient folders span every class: split per image
        experiments = ["rotation", "simclr"]
        (first, second), peak_rss = run_sweep(experiments, overrides, work)
        cells = {"first": first, "second": second}
        for name, experiment in zip(cells, experiments, strict=True):
            print(f"   {name} cell of the sweep ({experiment}): first training step after "
                  f"{cells[name]['first_step_s']:.1f} s, peak RssAnon {cells[name]['rss_anon_gb']:.2f} GB",
                  flush=True)
        print(f"   sweep process peak RSS {peak_rss:.2f} GB", flush=True)
        report.add("first cell: time to first step (process start, imports, store build)", "s",
                   [cells["first"]["first_step_s"]])
        report.add("second cell of the sweep: time to first step", "s", [cells["second"]["first_step_s"]],
                   SECOND_CELL_TARGET)
        for name in ("first", "second"):
            report.add(f"{name} cell: peak RssAnon", "GB", [cells[name]["rss_anon_gb"]], RSS_ANON_TARGET)
        report.add("sweep process: peak RSS", "GB", [peak_rss])

        mapped = load_imagefolder(DataConfig(name="imagefolder", root=str(tiles), include="**/x40/*.jpg",
                                             group_by="none",
                                             image_cache=str(work / "cell_cache" / "images"))).train_images
        subset = min(len(mapped), 16 if args.tiny else 4000)  # the in-memory copy must fit in RAM
        in_memory = take(mapped, np.arange(subset))
        batch, batches = (8, 4) if args.tiny else (256, 12)
        store_rates, memory_rates, conventional_rates = [], [], []
        for _ in range(repeats):
            store_rates.append(loader_rate(indexed_loader(mapped, subset, batch), batches))
            memory_rates.append(loader_rate(indexed_loader(in_memory, subset, batch), batches))
            files_loader = DataLoader(JpegFiles(files[:subset]), batch_size=batch, shuffle=True, num_workers=2)
            conventional_rates.append(loader_rate(files_loader, batches))
        report.add("loader: store (memory map)", "images/s", store_rates)
        report.add("loader: in memory", "images/s", memory_rates)
        report.add("loader: per-sample JPEG decode, 2 workers", "images/s", conventional_rates)
        report.add("loader: store/in-memory", "x", [s / m for s, m in zip(store_rates, memory_rates, strict=True)])

        train_batch, steps = (8, 2) if args.tiny else (32, 4)
        ratios = []
        for _ in range(repeats):
            from_store = training_rate(indexed_loader(mapped, subset, train_batch), steps, size)
            from_memory = training_rate(indexed_loader(in_memory, subset, train_batch), steps, size)
            ratios.append(from_store / from_memory)
            print(f"   rotation steps: {from_store:.1f} images/s from the store, {from_memory:.1f} in memory",
                  flush=True)
        report.add("pretext (rotation) store/in-memory", "x", ratios, STORE_VS_MEMORY_TARGET)
        report.note(f"{len(files):,} tiles of {size} px ({megabytes:,.0f} MB of JPEG); loaders and training use "
                    f"{subset:,} of them (the in-memory copy); the store was in the page cache")
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
