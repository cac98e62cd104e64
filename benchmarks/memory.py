"""Peak memory of one default cell: max RSS of the child process (resource.getrusage) and, where CUDA exists,
torch.cuda.max_memory_allocated inside that process.

Runs `python -m ssl_lightning +experiment=simclr data.fraction=0.25` (default profile) in a subprocess, or with
`--tiny` `data=synthetic profile=smoke`, with its run folder and pretext cache in a temporary folder, so nothing
is left in the user's outputs/. Extra Hydra overrides may follow the options.

    python -m benchmarks.memory [--tiny] [--repeats N] [overrides ...]

One repeat by default: each is a whole cell (minutes on 2 cores) and peak memory varies little between runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import Report, base_parser, print_machine, repeats_from
from benchmarks.figures import Target

REPO = Path(__file__).resolve().parent.parent
# profile=cpu is named because the entry point picks profile=paper (200 epochs) on a CUDA machine.
CELL = ["+experiment=simclr", "data.fraction=0.25", "profile=cpu"]
TINY_CELL = ["+experiment=simclr", "data=synthetic", "profile=smoke"]
RSS_TARGET = Target("<=", 3.0)  # GB, on CPU

# Runs the real entry point as `python -m ssl_lightning` would, then records the GPU peak of this process.
_CHILD = """
import atexit, json, os, runpy, sys
def _gpu_peak():
    import torch
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    with open(os.environ["BENCH_MEMORY_OUT"], "w") as handle:
        json.dump({"cuda_max_allocated": peak, "cuda": torch.cuda.is_available()}, handle)
atexit.register(_gpu_peak)
sys.argv = ["ssl_lightning", *sys.argv[1:]]
runpy.run_module("ssl_lightning", run_name="__main__", alter_sys=True)
"""


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def cell_overrides(tiny: bool, cuda: bool, user: list[str]) -> list[str]:
    """The cell's overrides; the user's own override of the same key replaces ours (Hydra rejects duplicates)."""
    defaults = [*(TINY_CELL if tiny else CELL), *(["trainer=gpu"] if cuda else [])]
    taken = {_key(item) for item in user}
    return [item for item in defaults if _key(item) not in taken] + user


def ru_maxrss_bytes(value: int) -> int:
    """ru_maxrss is in kilobytes on Linux and in bytes on macOS."""
    return value if sys.platform == "darwin" else value * 1024


def run_cell(overrides: list[str], workdir: Path) -> tuple[float, float | None, float, str]:
    """(max RSS in GB, CUDA peak in GB or None, wall seconds, log tail) of one cell run in a child process."""
    out_file = workdir / "gpu.json"
    command = [sys.executable, "-c", _CHILD, *overrides, f"hydra.run.dir={workdir / 'run'}",
               f"paths.cache={workdir / 'cache'}"]
    env = {**os.environ, "BENCH_MEMORY_OUT": str(out_file), "PYTHONUNBUFFERED": "1"}
    log_path = workdir / "cell.log"
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # the rusage of this child (and its waited-for children)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
    if process.returncode != 0:
        raise SystemExit(f"error: the cell exited with {process.returncode}:\n{tail}")
    gpu = json.loads(out_file.read_text()) if out_file.is_file() else {}
    peak = gpu.get("cuda_max_allocated")
    return ru_maxrss_bytes(usage.ru_maxrss) / 1e9, (peak / 1e9 if peak is not None else None), seconds, tail


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: train the cell on the GPU (trainer=gpu) when CUDA is available")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the cell, e.g. data=cifar10")
    args = parser.parse_args(argv)
    repeats = repeats_from(args, tiny_default=1, default=1)  # each repeat is a whole training cell (minutes)
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    overrides = cell_overrides(args.tiny, cuda, args.overrides)
    if args.threads is not None:
        print("note: --threads does not apply to the cell; set OMP_NUM_THREADS instead")

    print_machine("memory: peak memory of one cell in a child process")
    print(f"   cell: python -m ssl_lightning {' '.join(overrides)} (temporary run folder and cache); "
          f"{repeats} repeat(s)", flush=True)
    report = Report("memory")
    rss, gpu, wall = [], [], []
    for repeat in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench_memory_") as folder:
            peak_rss, peak_gpu, seconds, tail = run_cell(overrides, Path(folder))
        rss.append(peak_rss)
        wall.append(seconds)
        if peak_gpu is not None:
            gpu.append(peak_gpu)
        gpu_text = f", CUDA max allocated {peak_gpu:.3f} GB" if peak_gpu is not None else ""
        print(f"   repeat {repeat + 1}/{repeats}: max RSS {peak_rss:.3f} GB{gpu_text}, {seconds:.1f} s", flush=True)
        summary = [line for line in tail.splitlines() if "test_acc=" in line]
        print(f"   {summary[-1] if summary else '(no summary line in the log)'}", flush=True)
    report.add("cell max RSS", "GB", rss, RSS_TARGET)
    if gpu:
        report.add("cell CUDA max allocated", "GB", gpu)
    else:
        report.note("no CUDA device: GPU memory not measured")
    report.add("cell wall time", "s", wall)
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
