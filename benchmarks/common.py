"""What every benchmark shares: machine description, repeat statistics, targets and the figure table.

A benchmark returns a list of `Figure`s; `finish` prints them and, for `run_all`, writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

DEFAULT_REPEATS = 3


@dataclass(frozen=True)
class Target:
    """A bound the median must meet, e.g. Target(">=", 1.5)."""

    op: str
    value: float

    def met_by(self, value: float) -> bool:
        return value >= self.value if self.op == ">=" else value <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Figure:
    """One measured quantity: every repeat's value, so min and median can be reported."""

    benchmark: str
    name: str
    unit: str
    values: list[float]
    target: Target | None = None
    note: str = ""

    @property
    def min(self) -> float:
        return min(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def passed(self) -> bool | None:
        """Judged on the median; None when there is no target."""
        return None if self.target is None else self.target.met_by(self.median)

    def to_json(self) -> dict:
        data = asdict(self)
        data["target"] = asdict(self.target) if self.target else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> Figure:
        target = Target(**data["target"]) if data.get("target") else None
        return cls(data["benchmark"], data["name"], data["unit"], list(data["values"]), target, data.get("note", ""))


def verdict(figure: Figure) -> str:
    return {None: "-", True: "pass", False: "FAIL"}[figure.passed]


def format_value(value: float) -> str:
    if value != value:  # NaN
        return "nan"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def figure_table(figures: list[Figure], with_benchmark: bool = False) -> str:
    """A plain-text table: figure, unit, min, median, target, pass/fail."""
    header = ["benchmark"] if with_benchmark else []
    header += ["figure", "unit", "min", "median", "target", "result"]
    rows = [header]
    for fig in figures:
        row = [fig.benchmark] if with_benchmark else []
        row += [fig.name, fig.unit, format_value(fig.min), format_value(fig.median),
                str(fig.target) if fig.target else "-", verdict(fig)]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """The facts a reader needs to compare figures across machines."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} GPU(s))"
    else:
        device = "cpu (no CUDA)"
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    import torchvision

    return {
        "cores": f"{os.cpu_count()} logical, {usable} usable, torch threads {torch.get_num_threads()}",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load average": load,
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
    return parser


def repeats_from(args: argparse.Namespace, tiny_default: int = 2) -> int:
    if args.repeats is not None:
        if args.repeats < 1:
            raise SystemExit("error: --repeats must be at least 1")
        return args.repeats
    return tiny_default if args.tiny else DEFAULT_REPEATS


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
