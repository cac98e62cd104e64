"""Data-path overhead: seconds per training step through the real data path divided by the same step on a
batch that is already in memory (on the device).

Both runs use the real Lightning Trainer and LightningModule; the only difference is where batches come from:
DataModule -> DataLoader (index-batched, uint8) -> batch, or one prepared batch handed over again and again.

    python -m benchmarks.data_overhead [--tiny] [--repeats N] [--steps S]
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from benchmarks.common import (
    Report,
    apply_threads,
    base_parser,
    pick_device,
    print_machine,
    repeats_from,
    synchronize,
)
from benchmarks.figures import Target
from ssl_lightning.data import DataConfig, ImageSet, load_dataset
from ssl_lightning.data.datamodules import DownstreamDataModule, PretextDataModule
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods import registry
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder

METHODS = ("rotation", "rotation_jitter", "simclr", "classifier")
TARGET = Target("<=", 1.10)


@dataclass(frozen=True)
class Sizes:
    """The cpu profile's sizes by default (pretext batch 256, downstream batch 128 on 25% of the labels)."""

    pretext_batch: int
    downstream_batch: int
    fraction: float
    width: int
    warmup: int
    steps: int


DEFAULT_SIZES = Sizes(pretext_batch=256, downstream_batch=128, fraction=0.25, width=16, warmup=2, steps=10)
# The true overhead is a ~1 ms gather against 30-300 ms steps, so the ratio is mostly timing noise:
# more, shorter repeats make its median robust to another process stealing a core for a while.
DEFAULT_REPEATS = 5
TINY_SIZES = Sizes(pretext_batch=16, downstream_batch=16, fraction=0.5, width=8, warmup=1, steps=3)


class StepClock(Callback):
    """Time stamps at the end of every training step (after the device has finished it)."""

    def __init__(self, device: torch.device):
        self.device, self.ends = device, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.device)
        self.ends.append(time.perf_counter())

    def seconds_per_step(self, warmup: int) -> float:
        timed = self.ends[warmup - 1 :] if warmup > 0 else self.ends
        return (timed[-1] - timed[0]) / (len(timed) - 1)


class SameBatch:
    """An iterable that hands out one prepared batch `count` times: the data path costs nothing."""

    def __init__(self, batch, count: int):
        self.batch, self.count = batch, count

    def __iter__(self) -> Iterator:
        return (self.batch for _ in range(self.count))

    def __len__(self) -> int:
        return self.count


def load_images(tiny: bool, report: Report) -> tuple[ImageSet, str]:
    if tiny:
        return load_dataset(DataConfig(name="synthetic", image_size=16)), "synthetic 16 px RGB (tiny)"
    try:
        return load_dataset(DataConfig(name="fashion_mnist", download=False)), "Fashion-MNIST"
    except UserError as error:
        report.note(f"Fashion-MNIST not found ({error}); using synthetic 28 px grey images instead")
        images = load_dataset(DataConfig(name="synthetic", image_size=28, channels=1, train_size=20_000,
                                         test_size=16, num_classes=10))
        return images, "synthetic 28 px grey (Fashion-MNIST absent)"


def build(method: str, images: ImageSet, sizes: Sizes) -> tuple[pl.LightningModule, pl.LightningDataModule]:
    """The module and DataModule as the pipeline builds them (default settings of the cpu profile)."""
    torch.manual_seed(0)
    encoder = build_encoder(BackboneConfig(name="compact", width=sizes.width), images.channels, images.image_size[0])
    split = make_label_split(images.train_labels.numpy(), sizes.fraction, 0, 0.1, images.classes)
    if method == "classifier":
        module = Classifier(encoder, images.num_classes, OptimConfig(lr=0.05), epochs=10)
        data = DownstreamDataModule(images.train_images, images.train_labels, split.labeled, split.val,
                                    images.test_images, images.test_labels, sizes.downstream_batch, 512)
        return module, data
    spec = registry.get(method)  # the method's default hyper-parameters (those of its experiment file)
    module = spec.build(encoder, OptimConfig(), 2, spec.params())
    return module, PretextDataModule(images.train_images, split.pool, split.val, sizes.pretext_batch, 512)


def fit_seconds_per_step(module: pl.LightningModule, device: torch.device, steps: int, warmup: int, root: str,
                         datamodule: pl.LightningDataModule | None = None, batches: SameBatch | None = None) -> float:
    clock = StepClock(device)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, max_steps=warmup + steps, max_epochs=-1,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
        callbacks=[clock], default_root_dir=root,
    )
    if datamodule is not None:
        trainer.fit(module, datamodule=datamodule)
    else:
        trainer.fit(module, train_dataloaders=batches)
    return clock.seconds_per_step(warmup)


def first_batch(data: pl.LightningDataModule, device: torch.device):
    batch = next(iter(data.train_dataloader()))
    if isinstance(batch, (tuple, list)):
        return tuple(part.to(device) for part in batch)
    return batch.to(device)


def measure(method: str, images: ImageSet, sizes: Sizes, device: torch.device, repeats: int, root: str,
            report: Report) -> None:
    """Real data path vs in-memory batch, for today's NCHW module and the fast path (channels_last)."""
    for path in ("nchw", "channels_last"):
        module, data = build(method, images, sizes)
        if path == "channels_last":
            module = module.to(memory_format=torch.channels_last)
        in_memory = SameBatch(first_batch(data, device), sizes.warmup + sizes.steps)
        real, memory = [], []
        for repeat in range(repeats):
            runs = [("real", real), ("memory", memory)]
            for name, values in runs if repeat % 2 == 0 else runs[::-1]:  # alternate order against drift
                if name == "real":
                    values.append(fit_seconds_per_step(module, device, sizes.steps, sizes.warmup, root,
                                                       datamodule=data))
                else:
                    values.append(fit_seconds_per_step(module, device, sizes.steps, sizes.warmup, root,
                                                       batches=in_memory))
            print(f"   {method} ({path}) repeat {repeat + 1}/{repeats}: real path {1000 * real[-1]:.1f} ms/step, "
                  f"in memory {1000 * memory[-1]:.1f} ms/step, ratio {real[-1] / memory[-1]:.3f}", flush=True)
        suffix = "" if path == "nchw" else " (channels_last)"
        report.add(f"{method}{suffix} real data path", "ms/step", [1000 * v for v in real])
        report.add(f"{method}{suffix} batch in memory", "ms/step", [1000 * v for v in memory])
        report.add(f"{method}{suffix} real/in-memory", "x", [r / m for r, m in zip(real, memory, strict=True)],
                   TARGET)


def quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*but have no `val_dataloader`.*")
    warnings.filterwarnings("ignore", message=".*treespec.*")


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    if unknown := sorted(set(methods) - set(METHODS)):
        parser.error(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}")
    sizes = TINY_SIZES if args.tiny else DEFAULT_SIZES
    if args.steps is not None:
        sizes = Sizes(**{**sizes.__dict__, "steps": max(2, args.steps)})
    repeats = repeats_from(args, default=DEFAULT_REPEATS)
    apply_threads(args)
    device = pick_device(args.device)
    quiet_lightning()

    print_machine("data_overhead: real data path vs a batch already in memory (Lightning Trainer)")
    report = Report("data_overhead")
    images, source = load_images(args.tiny, report)
    print(f"   data: {source}; compact width {sizes.width}; pretext batch {sizes.pretext_batch}, downstream batch "
          f"{sizes.downstream_batch} (fraction {sizes.fraction}); {sizes.warmup} warm-up + {sizes.steps} timed "
          f"steps per run; {repeats} repeats; device {device}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_overhead_") as root:
        for method in methods:
            measure(method, images, sizes, device, repeats, root, report)
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
