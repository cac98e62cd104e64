"""Pretext throughput on an idle machine and beside one busy process, for each torch thread policy (issue 33).

Each policy trains the pretext step of a cell (profile=cpu: compact encoder, batch 256, channels_last for 28 px
grey images; batched augmentation, forward, backward, SGD step) on Fashion-MNIST, rotation and SimCLR, for a fixed
number of steps after warm-up steps, and reports source images/s. "Busy" starts one niced busy loop (`nice 10`,
`while True: pass`, started through `sh` so that it is no child of ours), as a neighbour's job would be, and always
stops it; "busy nice 0" the same loop at our own priority (the case that made two threads 2-3x slower than one).
Policies: torch's default thread count (2 on the 2-core machine), 1 thread, `trainer.threads=auto`
(ssl_lightning/training/thread_policy.py, sampled as at a cell start), and the default count with
OMP_WAIT_POLICY=PASSIVE (needs a fresh process: OpenMP reads it when torch loads). Targets: beside the busy process
auto >= 0.8x one thread (either neighbour); idle, auto >= 0.9x the default.

    python -m benchmarks.busy_machine [--tiny] [--repeats N] [--no-passive]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.common import Report, base_parser, print_machine, repeats_from
from benchmarks.figures import Target
from benchmarks.pretext_throughput import Setting, build_module, endless, fashion_mnist_images, ours_block
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.models.backbones import BackboneConfig
from ssl_lightning.training import thread_policy

METHODS = ("rotation", "simclr")
STATES = ("idle", "busy", "busy nice 0")  # busy: one loop at nice 10; busy nice 0: at our own priority
NEIGHBOUR_NICE = {"busy": 10, "busy nice 0": 0}
IN_PROCESS = ("default", "1 thread", "auto")  # set with torch.set_num_threads in this process
PASSIVE = "default, OMP_WAIT_POLICY=PASSIVE"
BUSY_TARGET = Target(">=", 0.8)  # auto / 1 thread beside the busy process
IDLE_TARGET = Target(">=", 0.9)  # auto / default on the idle machine


@dataclass(frozen=True)
class Sizes:
    batch: int
    steps: int
    warmup: int
    images: int | None  # Fashion-MNIST images kept (None: all)


FULL = Sizes(batch=256, steps=16, warmup=2, images=None)
TINY = Sizes(batch=16, steps=2, warmup=1, images=512)


# `sh` starts the loop and exits, so the loop is not our child: the policy counts its own children (DataLoader
# workers) as its own load, and a neighbour's job is no child of the cell either.
DETACHED_LOOP = 'nice -n {nice} "$0" -c "while True: pass" >/dev/null 2>&1 & echo $!'


@contextmanager
def busy_process(nice: int | None) -> Iterator[None]:
    """One busy loop at `nice`, not our child, while the block runs (nothing when None); always killed."""
    if nice is None:
        yield
        return
    started = subprocess.run(["sh", "-c", DETACHED_LOOP.format(nice=nice), sys.executable], capture_output=True,
                             text=True, check=True)
    pid = int(started.stdout.strip())
    try:
        time.sleep(0.5)  # let it take its core
        yield
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def threads_for(policy: str, default: int) -> tuple[int, str]:
    """Set torch's threads for an in-process policy; auto samples the machine now, as a cell start does."""
    if policy == "auto":
        decision = thread_policy.apply(thread_policy.AUTO, "benchmark", fresh_s=0.0)
        return decision.threads, decision.reason
    threads = default if policy == "default" else 1
    torch.set_num_threads(threads)
    return threads, f"{threads} thread(s)"


class Trainers:
    """Per method: a channels_last module, its optimiser and an endless batch stream over Fashion-MNIST."""

    def __init__(self, sizes: Sizes, report: Report | None):
        images, self.source = fashion_mnist_images(sizes.images, report or Report("busy_machine"))
        setting = Setting("compact", BackboneConfig(name="compact", width=16, stem_stride=2), images, sizes.batch,
                          sizes.steps, "")
        self.sizes, self.parts = sizes, {}
        for method in METHODS:
            module = build_module(method, setting, torch.device("cpu")).to(memory_format=torch.channels_last)
            loader = PretextDataModule(images, np.arange(len(images)), np.arange(0), sizes.batch,
                                       sizes.batch).train_dataloader()
            self.parts[method] = (module, module.configure_optimizers()["optimizer"], endless(loader))

    def rate(self, method: str) -> float:
        module, optimizer, batches = self.parts[method]
        seconds = ours_block(module, optimizer, batches, torch.device("cpu"), self.sizes.warmup, self.sizes.steps)
        return self.sizes.batch * self.sizes.steps / seconds


def worker(sizes: Sizes) -> None:
    """The PASSIVE variant, in its own process (started with OMP_WAIT_POLICY=PASSIVE): one JSON line of rates."""
    trainers = Trainers(sizes, None)
    print(json.dumps({method: trainers.rate(method) for method in METHODS}), flush=True)


def passive_rates(tiny: bool) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    line = [sys.executable, "-m", "benchmarks.busy_machine", "--worker", *(["--tiny"] if tiny else [])]
    done = subprocess.run(line, capture_output=True, text=True, env=env, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"error: the OMP_WAIT_POLICY=PASSIVE worker failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_ratio(report: Report, rates: dict[tuple[str, str, str], list[float]], method: str, state: str,
              pair: tuple[str, str], target: Target) -> None:
    """One policy's rate over another's, repeat by repeat."""
    top, bottom = rates[(method, state, pair[0])], rates[(method, state, pair[1])]
    report.add(f"{method} {state}: {pair[0]}/{pair[1]}", "x", [t / b for t, b in zip(top, bottom, strict=True)],
               target)


def markdown(rates: dict[tuple[str, str, str], list[float]], policies: list[str], default: int) -> str:
    """Policies as rows, method x state as columns: median img/s."""
    columns = [(method, state) for method in METHODS for state in STATES]
    lines = ["| policy | " + " | ".join(f"{m} {s}" for m, s in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for policy in policies:
        name = policy.replace("default", f"default ({default} thread{'' if default == 1 else 's'})", 1)
        cells = [f"{np.median(rates[(m, s, policy)]):,.0f}" if rates.get((m, s, policy)) else "-" for m, s in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help="internal: the PASSIVE variant's process")
    parser.add_argument("--passive", action=argparse.BooleanOptionalAction, default=None,
                        help="measure the OMP_WAIT_POLICY=PASSIVE variant (its own process; default: on, off with "
                             "--tiny)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    if args.worker:
        worker(sizes)
        return
    default, _ = thread_policy.cap()  # torch's own choice in this process, auto's cap
    passive = not args.tiny if args.passive is None else args.passive  # tiny: no second interpreter unless asked
    policies = [*IN_PROCESS, *([PASSIVE] if passive else [])]
    repeats = repeats_from(args, tiny_default=1, default=2)
    print_machine("busy_machine: pretext img/s idle and beside one busy process (nice 10, nice 0), per thread "
                  "policy")
    report = Report("busy_machine")
    trainers = Trainers(sizes, report)
    print(f"   {trainers.source}; batch {sizes.batch}, {sizes.steps} timed steps after {sizes.warmup} warm-up; "
          f"{repeats} repeat(s); torch default {default} threads", flush=True)
    rates: dict[tuple[str, str, str], list[float]] = {}
    for repeat in range(repeats):
        for state in STATES:
            with busy_process(NEIGHBOUR_NICE.get(state)):
                for method in METHODS:
                    order = IN_PROCESS if repeat % 2 == 0 else IN_PROCESS[::-1]  # alternate against drift
                    for policy in order:
                        threads, why = threads_for(policy, default)
                        rate = trainers.rate(method)
                        rates.setdefault((method, state, policy), []).append(rate)
                        print(f"   repeat {repeat + 1} {state} {method} {policy}: {rate:,.0f} img/s ({why})",
                              flush=True)
                if passive:
                    for method, rate in passive_rates(args.tiny).items():
                        rates.setdefault((method, state, PASSIVE), []).append(rate)
                        print(f"   repeat {repeat + 1} {state} {method} {PASSIVE}: {rate:,.0f} img/s", flush=True)
    torch.set_num_threads(default)
    for method in METHODS:
        for state in STATES:
            for policy in policies:
                report.add(f"{method} {state}: {policy}", "img/s", rates[(method, state, policy)])
        add_ratio(report, rates, method, "busy", ("auto", "1 thread"), BUSY_TARGET)
        add_ratio(report, rates, method, "busy nice 0", ("auto", "1 thread"), BUSY_TARGET)
        add_ratio(report, rates, method, "idle", ("auto", "default"), IDLE_TARGET)
    report.finish(args.json, args.tiny)
    print(f"\n{markdown(rates, policies, default)}", flush=True)


if __name__ == "__main__":
    main()
