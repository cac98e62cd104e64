"""Pretext training throughput: our pipeline vs the conventional per-sample one, same model, batch and data.

Ours: uint8 tensors -> index-batched DataLoader (PretextDataModule, no workers) -> batched augmentation on the
device inside the LightningModule's `pretext_step`. Conventional: per-sample torchvision v2 transforms on PIL
images in 2 DataLoader workers, then the same encoder + head + loss (`benchmarks.conventional`).
Images/s counts source images (rotation turns each into 4 samples, SimCLR into 2 views). Each repeat times
both pipelines (alternating which goes first) over a fixed number of steps after warm-up steps; the conventional
loader starts fresh workers every repeat, and their start-up falls in the warm-up.

    python -m benchmarks.pretext_throughput [--tiny] [--repeats N] [--methods simclr] [--backbones compact]
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks import conventional
from benchmarks.common import (
    Report,
    apply_threads,
    base_parser,
    pick_device,
    print_machine,
    repeats_from,
    timed,
)
from benchmarks.figures import Target
from ssl_lightning.data import DataConfig, load_dataset
from ssl_lightning.data.augment import simclr_view, to_unit_float
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.errors import UserError
from ssl_lightning.methods import registry
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder

METHODS = ("rotation", "rotation_jitter", "simclr")
BACKBONES = ("compact", "resnet18")
SIMCLR_TARGET = Target(">=", 1.5)  # ours/conventional for SimCLR with the default CPU backbone (2 cores)
FAST_PATH_TARGET = Target(">=", 1.3)  # the CPU fast path (channels_last) against today's NCHW step


@dataclass(frozen=True)
class Sizes:
    compact_batch: int
    compact_steps: int
    resnet_batch: int
    resnet_steps: int
    resnet_image: int
    warmup: int
    fmnist_images: int | None  # None: the whole training set


# ResNet-18 on a CPU is compute-bound (about 4-10 images/s per core at 32 px): few, small steps there.
CPU_SIZES = Sizes(compact_batch=256, compact_steps=10, resnet_batch=8, resnet_steps=2, resnet_image=32,
                  warmup=1, fmnist_images=None)
CUDA_SIZES = Sizes(compact_batch=256, compact_steps=20, resnet_batch=128, resnet_steps=20, resnet_image=32,
                   warmup=3, fmnist_images=None)
TINY_SIZES = Sizes(compact_batch=16, compact_steps=2, resnet_batch=2, resnet_steps=1, resnet_image=8, warmup=1,
                   fmnist_images=512)


@dataclass
class Setting:
    """One (backbone, data) pair the three methods are timed on."""

    label: str
    backbone: BackboneConfig
    images: torch.Tensor
    batch_size: int
    steps: int
    description: str


def fashion_mnist_images(count: int | None, report: Report) -> tuple[torch.Tensor, str]:
    """Real Fashion-MNIST training images when installed; synthetic 28 px grey otherwise (and says so)."""
    try:
        images = load_dataset(DataConfig(name="fashion_mnist", download=False)).train_images
        source = "Fashion-MNIST"
    except UserError as error:
        report.note(f"Fashion-MNIST not found ({error}); using synthetic 28 px grey images instead")
        size = count or 10_000
        images = load_dataset(DataConfig(name="synthetic", image_size=28, channels=1, train_size=size,
                                         test_size=4)).train_images
        source = "synthetic 28 px grey (Fashion-MNIST absent)"
    return (images[:count] if count else images), source


def cifar_sized_images(count: int, size: int) -> torch.Tensor:
    """CIFAR-sized 3-channel images from the synthetic generator (content does not change the speed)."""
    return load_dataset(DataConfig(name="synthetic", image_size=size, channels=3, train_size=count,
                                   test_size=4)).train_images


def build_settings(sizes: Sizes, backbones: list[str], report: Report) -> list[Setting]:
    settings = []
    if "compact" in backbones:
        images, source = fashion_mnist_images(sizes.fmnist_images, report)
        settings.append(Setting("compact", BackboneConfig(name="compact", width=16, stem_stride=2), images,
                                sizes.compact_batch, sizes.compact_steps,
                                f"compact (width 16, stem stride 2) on {source}, {tuple(images.shape[1:])}"))
    if "resnet18" in backbones:
        needed = (sizes.warmup + sizes.resnet_steps + 2 * conventional.NUM_WORKERS + 1) * sizes.resnet_batch
        images = cifar_sized_images(max(needed, 256), sizes.resnet_image)
        settings.append(Setting("resnet18", BackboneConfig(name="resnet18", stem="cifar"), images,
                                sizes.resnet_batch, sizes.resnet_steps,
                                f"ResNet-18 (CIFAR stem) on synthetic {sizes.resnet_image} px RGB"))
    return settings


def build_module(method: str, setting: Setting, device: torch.device) -> PretextMethod:
    torch.manual_seed(0)
    channels, size = int(setting.images.shape[1]), int(setting.images.shape[-1])
    encoder = build_encoder(setting.backbone, channels, size)
    spec = registry.get(method)  # the method's default hyper-parameters (those of its experiment file)
    module: PretextMethod = spec.build(encoder, OptimConfig(), 1, spec.params())
    return module.to(device).train()


def endless(loader) -> Iterator:
    while True:
        yield from loader


def ours_block(module: PretextMethod, optimizer, batches: Iterator, device: torch.device, warmup: int,
               steps: int) -> float:
    """Seconds for `steps` training steps of our pipeline after `warmup` untimed ones."""

    def step() -> None:
        images = to_unit_float(next(batches).to(device, non_blocking=True))
        loss, _ = module.pretext_step(images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())  # the step's sync point, as training_step's finiteness check

    for _ in range(warmup):
        step()
    return timed(lambda: [step() for _ in range(steps)], device)


def conventional_block(module: PretextMethod, optimizer, loader, device: torch.device, warmup: int,
                       steps: int) -> float:
    """Seconds for `steps` steps fed by fresh per-sample workers (worker start-up is in the warm-up)."""
    iterator = iter(loader)

    def run(count: int) -> None:
        for _ in range(count):
            conventional.training_step(module, optimizer, next(iterator), device)

    run(warmup)
    return timed(lambda: run(steps), device)  # returning drops the iterator, which stops its workers


def measure_method(method: str, setting: Setting, device: torch.device, sizes: Sizes, repeats: int,
                   as_pil: bool, report: Report) -> None:
    """Our pipeline on today's default path (NCHW, eager) and on the fast path (channels_last), against the
    conventional per-sample pipeline (with the NCHW module), all in the same run."""
    modules = {"nchw": build_module(method, setting, device)}
    modules["channels_last"] = build_module(method, setting, device).to(memory_format=torch.channels_last)
    optimizers = {path: module.configure_optimizers()["optimizer"] for path, module in modules.items()}
    count = len(setting.images)
    pin = device.type == "cuda"
    ours_loader = PretextDataModule(setting.images, np.arange(count), np.arange(0), setting.batch_size,
                                    setting.batch_size, pin_memory=pin).train_dataloader()
    batches = endless(ours_loader)
    conv_loader = conventional.make_loader(setting.images, modules["nchw"], setting.batch_size, as_pil, pin)
    images_per_block = setting.batch_size * setting.steps
    rates: dict[str, list[float]] = {"nchw": [], "channels_last": [], "conventional": []}
    for repeat in range(repeats):
        order = list(rates) if repeat % 2 == 0 else list(rates)[::-1]  # alternate order against drift
        for name in order:
            if name == "conventional":
                seconds = conventional_block(modules["nchw"], optimizers["nchw"], conv_loader, device, sizes.warmup,
                                             setting.steps)
            else:
                seconds = ours_block(modules[name], optimizers[name], batches, device, sizes.warmup, setting.steps)
            rates[name].append(images_per_block / seconds)
        print(f"   {method}/{setting.label} repeat {repeat + 1}/{repeats}: ours {rates['nchw'][-1]:,.0f} img/s, "
              f"ours channels_last {rates['channels_last'][-1]:,.0f} img/s, conventional "
              f"{rates['conventional'][-1]:,.0f} img/s", flush=True)
    key = f"{method}/{setting.label}"
    ours, fast, conv = rates["nchw"], rates["channels_last"], rates["conventional"]
    report.add(f"{key} ours", "img/s", ours)
    report.add(f"{key} ours channels_last", "img/s", fast)
    report.add(f"{key} conventional", "img/s", conv)
    target = SIMCLR_TARGET if method == "simclr" and setting.label == "compact" else None
    report.add(f"{key} ours/conventional", "x", [o / c for o, c in zip(ours, conv, strict=True)], target)
    fast_target = FAST_PATH_TARGET if setting.label == "compact" else None
    report.add(f"{key} channels_last/nchw", "x", [f / o for f, o in zip(fast, ours, strict=True)], fast_target)


def kornia_view(channels: int, size: int, module):
    """kornia.augmentation's batched equivalent of one SimCLR view (crop+flip, jitter p=0.8, grayscale)."""
    import kornia.augmentation as K

    s = module.jitter_strength
    colour = 1.0 if channels == 3 else 0.0  # saturation and hue do not exist for grey images (as in ours)
    steps = [K.RandomResizedCrop((size, size), scale=(module.crop_min_scale, 1.0)), K.RandomHorizontalFlip(),
             K.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s * colour, 0.2 * s * colour, p=0.8)]
    if channels == 3:
        steps.append(K.RandomGrayscale(p=module.grayscale_p))
    return K.AugmentationSequential(*steps)


def measure_kornia(setting: Setting, device: torch.device, sizes: Sizes, repeats: int, report: Report) -> None:
    """Augmentation only (two SimCLR views of one batch): our batched ops vs kornia's."""
    module = build_module("simclr", setting, device)
    channels, size = int(setting.images.shape[1]), int(setting.images.shape[-1])
    kornia_aug = kornia_view(channels, size, module).to(device)
    batch = to_unit_float(setting.images[: setting.batch_size].to(device))

    def ours() -> None:
        for _ in range(2):
            simclr_view(batch, module.jitter_strength, module.crop_min_scale, module.grayscale_p)

    def theirs() -> None:
        for _ in range(2):
            kornia_aug(batch)

    calls = max(setting.steps, 3)
    results: dict[str, list[float]] = {"ours": [], "kornia": []}
    for _ in range(repeats):
        for name, run in (("ours", ours), ("kornia", theirs)):
            run()  # warm-up
            seconds = timed(lambda run=run: [run() for _ in range(calls)], device)
            results[name].append(setting.batch_size * calls / seconds)
    key = f"simclr-views/{setting.label}"
    report.add(f"{key} ours aug", "img/s", results["ours"])
    report.add(f"{key} kornia aug", "img/s", results["kornia"])
    report.add(f"{key} ours/kornia", "x", [o / k for o, k in zip(results["ours"], results["kornia"], strict=True)])


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of " + ", ".join(METHODS))
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="comma-separated subset of compact, resnet18")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda")
    parser.add_argument("--conventional-input", choices=("pil", "tensor"), default="pil",
                        help="per-sample transforms on PIL images (torchvision datasets) or per-image uint8 tensors")
    parser.add_argument("--compact-batch", type=int, default=None)
    parser.add_argument("--resnet-batch", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per repeat (both backbones)")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    backbones = [b for b in args.backbones.split(",") if b]
    if unknown := sorted(set(methods) - set(METHODS)) + sorted(set(backbones) - set(BACKBONES)):
        parser.error(f"unknown method/backbone {unknown}")
    device = pick_device(args.device)
    sizes = TINY_SIZES if args.tiny else CUDA_SIZES if device.type == "cuda" else CPU_SIZES
    overrides = {"compact_batch": args.compact_batch, "resnet_batch": args.resnet_batch,
                 "compact_steps": args.steps, "resnet_steps": args.steps}
    sizes = Sizes(**{**sizes.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    repeats = repeats_from(args)
    apply_threads(args)

    print_machine("pretext_throughput: our batched pipeline vs per-sample torchvision transforms in 2 workers")
    report = Report("pretext_throughput")
    print(f"   timing: {repeats} repeats, {sizes.warmup} warm-up step(s) per block, device {device}, "
          f"conventional input: {args.conventional_input}", flush=True)
    for setting in build_settings(sizes, backbones, report):
        print(f"-- {setting.label}: {setting.description}; batch {setting.batch_size}, {setting.steps} timed steps",
              flush=True)
        for method in methods:
            measure_method(method, setting, device, sizes, repeats, args.conventional_input == "pil", report)
        if "simclr" in methods:
            if importlib.util.find_spec("kornia") is None:
                report.note(f"kornia is not installed: skipped the kornia comparison for {setting.label}")
            else:
                measure_kornia(setting, device, sizes, repeats, report)
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
