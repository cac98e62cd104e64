"""What every benchmark shares: the machine description, timing, command-line options and the report.

A benchmark collects `Figure`s in a `Report`; `finish` prints them and, for `run_all`, writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks.figures import Figure, Target, figure_table

DEFAULT_REPEATS = 3
_THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")


def machine() -> dict[str, str]:
    """The facts a reader needs to compare figures across machines."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    else:
        device = "cpu (no CUDA)"
    load = "n/a"
    if hasattr(os, "getloadavg"):
        averages = os.getloadavg()
        load = ", ".join(f"{v:.2f}" for v in averages)
        if averages[0] > (usable or 1):
            load += (f" (BUSY: more runnable work than the {usable} usable cores, figures will be noisy; "
                     "try --threads 1 or OMP_WAIT_POLICY=PASSIVE)")
    import torchvision

    return {
        "cores": f"{os.cpu_count()} logical, {usable} usable, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average": load,
        "thread env": ", ".join(f"{k}={os.environ[k]}" for k in _THREAD_ENV if k in os.environ) or "none set",
    }


def print_machine(title: str) -> None:
    print(f"== {title}", flush=True)
    for key, value in machine().items():
        print(f"   {key}: {value}", flush=True)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], None], device: torch.device) -> float:
    """Wall seconds of `run`, with the device drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that the script runs, in seconds")
    parser.add_argument("--repeats", type=int, default=None, help=f"repeats per figure (default {DEFAULT_REPEATS})")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 with --tiny, which keeps tiny runs "
                             "fast on a busy machine)")
    return parser


def apply_threads(args: argparse.Namespace) -> None:
    threads = args.threads if args.threads is not None else (1 if args.tiny else None)
    if threads is not None:
        torch.set_num_threads(threads)


def repeats_from(args: argparse.Namespace, tiny_default: int = 2, default: int = DEFAULT_REPEATS) -> int:
    if args.repeats is not None:
        if args.repeats < 1:
            raise SystemExit("error: --repeats must be at least 1")
        return args.repeats
    return tiny_default if args.tiny else default


@dataclass
class Report:
    """Collects a benchmark's figures and notes; `finish` prints the table and writes the JSON."""

    benchmark: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, unit: str, values: list[float], target: Target | None = None, note: str = "") -> Figure:
        figure = Figure(self.benchmark, name, unit, [float(v) for v in values], target, note)
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def finish(self, json_path: Path | None, tiny: bool) -> None:
        print(f"\n== {self.benchmark} figures (min and median over repeats{'; TINY sizes' if tiny else ''})")
        print(figure_table(self.figures), flush=True)
        for text in self.notes:
            print(f"note: {text}")
        if json_path is not None:
            payload = {"benchmark": self.benchmark, "tiny": tiny, "machine": machine(), "notes": self.notes,
                       "figures": [fig.to_json() for fig in self.figures]}
            json_path.write_text(json.dumps(payload, indent=2))
        sys.stdout.flush()


def run_logged(command: list[str], log: Path) -> None:
    """One step of a study: the command printed (so it can be repeated by hand), its output in `log`, its wall time
    printed; a failed step stops the study naming its log."""
    print("$", shlex.join(command), flush=True)
    started = time.perf_counter()
    with log.open("w") as out:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    print(f"  exit {done.returncode} after {time.perf_counter() - started:.0f} s (log: {log})", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(command)}; see {log}")
