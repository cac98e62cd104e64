"""Whole training steps on the CPU per method and backbone: NCHW vs channels_last vs torch.compile vs both, and
channels_last with bfloat16 autocast (`trainer.precision=bf16-mixed`; fast only where the CPU has AMX/AVX512-BF16).

A step is what `training_step` does: uint8 batch -> float -> batched augmentation -> encoder -> loss ->
backward -> optimizer step. The compile column also reports the one-off compilation time, from which the
break-even (steps after which compiling has paid for itself) follows.

    python -m benchmarks.cpu_paths [--tiny] [--repeats N] [--methods rotation,simclr] [--backbones compact]
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from benchmarks.common import Report, apply_threads, base_parser, print_machine, repeats_from, timed
from ssl_lightning.data.augment import random_shift_flip, to_unit_float
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods import registry
from ssl_lightning.methods.base import PretextMethod
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.training.trainer_factory import prepare_module

METHODS = (*registry.methods(), "classifier")  # every registered pretext method, then the downstream classifier
DEFAULT_METHODS = ("rotation", "rotation_jitter", "simclr", "classifier")  # the original study's
BACKBONES = ("compact", "resnet18")
# path -> (channels_last, compile, bf16 autocast)
PATHS = {"nchw": (False, False, False), "channels_last": (True, False, False), "compile": (False, True, False),
         "both": (True, True, False), "bf16": (True, False, True)}


@dataclass(frozen=True)
class Sizes:
    batch: dict[str, int]
    image: dict[str, int]
    channels: dict[str, int]
    steps: dict[str, int]
    warmup: int


CPU_SIZES = Sizes(batch={"compact": 256, "resnet18": 16}, image={"compact": 28, "resnet18": 32},
                  channels={"compact": 1, "resnet18": 3}, steps={"compact": 8, "resnet18": 2}, warmup=2)
TINY_SIZES = Sizes(batch={"compact": 8, "resnet18": 2}, image={"compact": 16, "resnet18": 16},
                   channels={"compact": 1, "resnet18": 3}, steps={"compact": 2, "resnet18": 1}, warmup=1)


class _Flags:
    def __init__(self, channels_last: bool, compile: bool):
        self.channels_last, self.compile = channels_last, compile


def build(method: str, backbone: str, sizes: Sizes, channels_last: bool, compile: bool):
    torch.manual_seed(0)
    config = BackboneConfig(name=backbone, stem="cifar") if backbone == "resnet18" else BackboneConfig()
    encoder = build_encoder(config, sizes.channels[backbone], sizes.image[backbone])
    if method == "classifier":
        module: torch.nn.Module = Classifier(encoder, 10, OptimConfig(), epochs=1)
    else:
        spec = registry.get(method)  # the method's default hyper-parameters (those of its experiment file)
        module = spec.build(encoder, OptimConfig(), 1, spec.params())
    module = prepare_module(module, _Flags(channels_last, compile), sizes.channels[backbone],
                            sizes.image[backbone]).train()
    optimizer = module.configure_optimizers()["optimizer"]
    return module, optimizer


def step_function(method: str, module, optimizer, batch: torch.Tensor, labels: torch.Tensor, bf16: bool = False):
    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # what Lightning's bf16-mixed does
            images = to_unit_float(batch)
            if isinstance(module, PretextMethod):
                loss, _ = module.pretext_step(images)
            else:
                logits = module(random_shift_flip(images))
                loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(method: str, backbone: str, sizes: Sizes, repeats: int, report: Report, paths: list[str]) -> None:
    batch_size, steps = sizes.batch[backbone], sizes.steps[backbone]
    batch = torch.randint(0, 256, (batch_size, sizes.channels[backbone], sizes.image[backbone],
                                   sizes.image[backbone]), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch_size,))
    rates: dict[str, float] = {}
    for path in paths:
        channels_last, compile, bf16 = PATHS[path]
        module, optimizer = build(method, backbone, sizes, channels_last, compile)
        step = step_function(method, module, optimizer, batch, labels, bf16)
        started = time.perf_counter()
        step()  # the first step pays for compilation
        first = time.perf_counter() - started
        for _ in range(sizes.warmup - 1):
            step()
        values = []
        for _ in range(repeats):
            values.append(batch_size * steps / timed(lambda step=step: [step() for _ in range(steps)],
                                                     torch.device("cpu")))
        values.sort()
        rates[path] = values[len(values) // 2]
        key = f"{method}/{backbone} {path}"
        report.add(key, "img/s", values)
        if compile:
            per_step = batch_size / rates[path]
            eager = batch_size / rates["channels_last" if channels_last else "nchw"]
            saving = eager - per_step
            overhead = first - per_step
            note = (f"break-even after {overhead / saving:,.0f} steps" if saving > 0 else "never pays (slower)")
            report.add(f"{key} first step", "s", [first], note=note)
        print(f"   {key}: {rates[path]:,.0f} img/s (first step {first:.1f} s)", flush=True)
    for path in (p for p in paths if p != "nchw"):
        report.add(f"{method}/{backbone} {path}/nchw", "x", [rates[path] / rates["nchw"]])


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="subset of " + ", ".join(METHODS))
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--paths", default=",".join(PATHS), help="subset of " + ", ".join(PATHS))
    args = parser.parse_args(argv)
    paths = [p for p in args.paths.split(",") if p]
    if "nchw" not in paths or (unknown := sorted(set(paths) - set(PATHS))):
        parser.error(f"--paths must include nchw and name only {', '.join(PATHS)}")
    methods = [m for m in args.methods.split(",") if m]
    backbones = [b for b in args.backbones.split(",") if b]
    if unknown := sorted(set(methods) - set(METHODS)) + sorted(set(backbones) - set(BACKBONES)):
        parser.error(f"unknown method/backbone {unknown}")
    sizes = TINY_SIZES if args.tiny else CPU_SIZES
    repeats = repeats_from(args)
    apply_threads(args)
    print_machine("cpu_paths: NCHW vs channels_last vs torch.compile vs both, whole training steps on the CPU")
    report = Report("cpu_paths")
    for backbone in backbones:
        for method in methods:
            measure(method, backbone, sizes, repeats, report, paths)
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
