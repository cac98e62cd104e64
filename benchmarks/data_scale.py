"""Real collections at scale: N JPEG tiles of 224 px decoded once into the image store, then read through maps.

Measures (1) store build images/s with 1 decode worker and with all cores; (2) for a first cell (rotation,
builds the store) and a second cell (simclr, reuses it): time to the first training step, peak anonymous
memory (RssAnon) and peak RSS of the cell's process; (3) pretext input images/s from the store against the
same images in memory and against the conventional per-sample pipeline decoding the JPEG files in 2 DataLoader
workers, both as a bare loader and under real rotation training steps.

    python -m benchmarks.data_scale [--tiny] [--count N] [--folder PATH] [--repeats N]

`--folder` keeps the generated tiles (and reuses them on the next run); otherwise everything lives in a
temporary folder. The cells run `python -m ssl_lightning ... data=imagefolder profile=smoke` as a user would.
"""

from __future__ import annotations

import json
import multiprocessing
import os
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
from ssl_lightning.data.loading import IndexedImages, ShardedBatchSampler
from ssl_lightning.data.mapped_images import take
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder

REPO = Path(__file__).resolve().parent.parent
CLASSES = ("adh", "dcis", "normal")
RSS_ANON_TARGET = Target("<=", 3.0)  # GB
SECOND_CELL_TARGET = Target("<=", 10.0)  # s to the first training step
STORE_VS_MEMORY_TARGET = Target(">=", 0.9)
# Records the first optimizer step's wall-clock time, then runs the real entry point.
_CHILD = """
import json, os, runpy, sys, time
from torch.optim.optimizer import register_optimizer_step_pre_hook
_out = os.environ["BENCH_FIRST_STEP"]
def _first(optimizer, args, kwargs):
    if not os.path.exists(_out):
        with open(_out, "w") as handle:
            json.dump({"first_step": time.time()}, handle)
register_optimizer_step_pre_hook(_first)
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
    """images/s of one store build from scratch."""
    request = StoreRequest(root=tiles, files=files, labels=None, image_size=None, channels=None, include=None,
                           decode_workers=workers)
    started = time.perf_counter()
    stored = ImageStore(cache).open(request)
    seconds = time.perf_counter() - started
    assert stored.built
    return len(files) / seconds


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_cell(overrides: list[str], work: Path, name: str) -> dict[str, float]:
    """Time to the first training step, peak RssAnon and peak RSS (GB) of one CLI cell."""
    marker = work / f"{name}.first_step.json"
    command = [sys.executable, "-c", _CHILD, *overrides, f"hydra.run.dir={work / name}",
               f"paths.cache={work / 'cell_cache'}"]
    env = {**os.environ, "BENCH_FIRST_STEP": str(marker), "PYTHONUNBUFFERED": "1"}
    log_path = work / f"{name}.log"
    peak_anon = 0
    started = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        done = threading.Event()

        def poll() -> None:
            nonlocal peak_anon
            while not done.is_set():
                peak_anon = max(peak_anon, _status_kb(process.pid, "RssAnon"))
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        poller.join()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"error: cell {name} failed:\n{tail}")
    first = json.loads(marker.read_text())["first_step"] if marker.is_file() else float("nan")
    return {"first_step_s": first - started, "rss_anon_gb": peak_anon * 1024 / 1e9,
            "rss_gb": usage.ru_maxrss * 1024 / 1e9}


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
    sampler = ShardedBatchSampler(count, batch, shuffle=True, drop_last=True, seed=0)
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
        for repeat in range(repeats):
            one.append(build_rate(tiles, files, work / f"build1_{repeat}", 1))
            many.append(build_rate(tiles, files, work / f"buildN_{repeat}", cores))
            print(f"   build: {one[-1]:.0f} images/s with 1 worker, {many[-1]:.0f} with {cores}", flush=True)
        report.add("store build, 1 decode worker", "images/s", one)
        report.add(f"store build, {cores} decode workers", "images/s", many)

        overrides = ["data=imagefolder", f"data.root={tiles}", "data.include=**/x40/*.jpg", "data.fraction=0.05",
                     "data.eval_batch_size=64", "profile=smoke", "trainer=cpu"]  # 224 px evaluation on CPU: small
        cells = {}
        for name, experiment in (("first", "rotation"), ("second", "simclr")):
            cells[name] = run_cell([f"+experiment={experiment}", *overrides], work, name)
            print(f"   {name} cell ({experiment}): first training step after {cells[name]['first_step_s']:.1f} s, "
                  f"peak RssAnon {cells[name]['rss_anon_gb']:.2f} GB, peak RSS {cells[name]['rss_gb']:.2f} GB",
                  flush=True)
        report.add("first cell: time to first step (builds the store)", "s", [cells["first"]["first_step_s"]])
        report.add("second cell: time to first step", "s", [cells["second"]["first_step_s"]], SECOND_CELL_TARGET)
        for name in ("first", "second"):
            report.add(f"{name} cell: peak RssAnon", "GB", [cells[name]["rss_anon_gb"]], RSS_ANON_TARGET)
            report.add(f"{name} cell: peak RSS", "GB", [cells[name]["rss_gb"]])

        mapped = load_imagefolder(DataConfig(name="imagefolder", root=str(tiles), include="**/x40/*.jpg",
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
