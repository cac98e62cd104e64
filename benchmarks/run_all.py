"""Run every registered benchmark, each in its own process, then print one table of all figures with targets.

    python -m benchmarks.run_all [--tiny] [--repeats N] [--only a,b] [--grid] [--strict]

Adding a benchmark is one line in REGISTRY: a module `benchmarks/<name>.py` whose `main()` accepts
`--tiny`, `--repeats N`, `--threads N` and `--json PATH` (see `benchmarks.common.Report`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.figures import Figure, figure_table

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Benchmark:
    name: str  # runs `python -m benchmarks.<name>`
    opt_in: str | None = None  # only run when `--<opt_in>` is given (long benchmarks)
    threads: bool = True  # whether it takes --threads


REGISTRY: tuple[Benchmark, ...] = (
    Benchmark("pretext_throughput"),
    Benchmark("data_overhead"),
    Benchmark("memory", threads=False),
    Benchmark("probe_cost"),  # one profile=cpu SimCLR encoder, then probes on its cached features per label split
    Benchmark("busy_machine", threads=False),  # pretext img/s idle and beside a busy process, per thread policy
    Benchmark("data_scale", opt_in="scale"),  # 50,000 JPEG tiles through the image store: 6-7 min, 9 GB of disk
    Benchmark("grid_time", opt_in="grid"),  # the 4 x 3 grid's wall time, ~30 min
    Benchmark("cpu_paths", opt_in="cpu"),  # NCHW / channels_last / compile per method and backbone, ~15 min
    Benchmark("threads", opt_in="cpu"),  # torch threads and OMP_WAIT_POLICY with 1 and 2 processes, ~5 min
)


@dataclass
class Outcome:
    benchmark: Benchmark
    status: str  # ok | failed | skipped
    seconds: float = 0.0
    figures: list[Figure] | None = None
    notes: list[str] | None = None
    machine: dict | None = None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks that every benchmark runs")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per figure (each benchmark's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the benchmarks that take it")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names to run")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    for opt_in in sorted({b.opt_in for b in REGISTRY if b.opt_in}):
        names = ", ".join(b.name for b in REGISTRY if b.opt_in == opt_in)
        parser.add_argument(f"--{opt_in}", action="store_true", help=f"also run {names} (long)")
    args = parser.parse_args(argv)
    known = {b.name for b in REGISTRY}
    if args.only is not None and (unknown := sorted(set(args.only.split(",")) - known)):
        parser.error(f"unknown benchmark(s) {unknown}; registered: {', '.join(b.name for b in REGISTRY)}")
    return args


def selected(args: argparse.Namespace) -> list[Benchmark]:
    if args.only is not None:
        names = set(args.only.split(","))
        return [b for b in REGISTRY if b.name in names]
    return [b for b in REGISTRY if b.opt_in is None or getattr(args, b.opt_in)]


def command(benchmark: Benchmark, args: argparse.Namespace, json_path: Path) -> list[str]:
    line = [sys.executable, "-m", f"benchmarks.{benchmark.name}", "--json", str(json_path)]
    if args.tiny:
        line.append("--tiny")
    if args.repeats is not None:
        line += ["--repeats", str(args.repeats)]
    if args.threads is not None and benchmark.threads:
        line += ["--threads", str(args.threads)]
    return line


def run_one(benchmark: Benchmark, args: argparse.Namespace, folder: Path) -> Outcome:
    if importlib.util.find_spec(f"benchmarks.{benchmark.name}") is None:
        print(f"\n#### {benchmark.name}: skipped (benchmarks/{benchmark.name}.py does not exist yet)", flush=True)
        return Outcome(benchmark, "skipped")
    json_path = folder / f"{benchmark.name}.json"
    line = command(benchmark, args, json_path)
    print(f"\n#### {benchmark.name}: {' '.join(line[1:])}", flush=True)
    started = time.perf_counter()
    returncode = subprocess.run(line, cwd=REPO).returncode
    seconds = time.perf_counter() - started
    if returncode != 0 or not json_path.is_file():
        print(f"#### {benchmark.name}: FAILED (exit code {returncode})", flush=True)
        return Outcome(benchmark, "failed", seconds)
    payload = json.loads(json_path.read_text())
    figures = [Figure.from_json(item) for item in payload["figures"]]
    return Outcome(benchmark, "ok", seconds, figures, payload.get("notes", []), payload.get("machine"))


def summary(outcomes: list[Outcome], tiny: bool) -> str:
    lines = ["", "=" * 100, f"SUMMARY{' (TINY sizes: figures only show that the scripts run)' if tiny else ''}"]
    machine = next((o.machine for o in outcomes if o.machine), None)
    if machine:
        lines += [f"  {key}: {value}" for key, value in machine.items()]
    figures = [fig for o in outcomes for fig in (o.figures or [])]
    if figures:
        lines += ["", figure_table(figures, with_benchmark=True)]
    lines.append("")
    for outcome in outcomes:
        lines.append(f"  {outcome.benchmark.name}: {outcome.status}"
                     + (f" ({outcome.seconds:.0f} s)" if outcome.status != "skipped" else ""))
        lines += [f"    note: {note}" for note in outcome.notes or []]
    skipped = [b for b in REGISTRY if b.opt_in and b not in [o.benchmark for o in outcomes]]
    lines += [f"  {b.name}: not run (add --{b.opt_in})" for b in skipped]
    passed = [fig.passed for fig in figures if fig.passed is not None]
    lines.append(f"  targets: {sum(passed)}/{len(passed)} met (judged on the median)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_all_") as folder:
        outcomes = [run_one(benchmark, args, Path(folder)) for benchmark in selected(args)]
    print(summary(outcomes, args.tiny), flush=True)
    if any(o.status == "failed" for o in outcomes):
        return 1
    missed = any(fig.passed is False for o in outcomes for fig in (o.figures or []))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
