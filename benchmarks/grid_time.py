"""Wall time of the default grid (4 experiments x 3 fractions, 1 seed) with pretext reuse against
`pretext.reuse=false`, with the seconds per stage summed from the cells' results.json.

    python -m benchmarks.grid_time [--tiny] [--no-baseline] [--compare reuse|fast_path] [--with-compile] [overrides ...]

Each variant runs the real multirun in a temporary folder (fresh pretext store), so nothing is left in outputs/.
The full grid takes about 15-30 minutes on 2 CPU cores per variant; `--no-baseline` skips the reuse=false run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Report, base_parser, print_machine
from benchmarks.figures import Target

GRID = ["+experiment=rotation,rotation_jitter,simclr,supervised", "data.fraction=0.05,0.25,0.5", "profile=cpu",
        "trainer.enable_progress_bar=false"]
TINY_GRID = ["+experiment=rotation,supervised", "data.fraction=0.25,0.5", "data=synthetic", "profile=smoke"]
WALL_TARGET_MIN = Target("<=", 30.0)


def run_grid(overrides: list[str], folder: Path) -> tuple[float, dict[str, float], int]:
    """Run one multirun; return wall seconds, summed per-stage seconds and the number of ok cells."""
    command = [sys.executable, "-m", "ssl_lightning", "-m", *overrides, f"hydra.sweep.dir={folder / 'sweep'}",
               f"paths.cache={folder / 'cache'}"]
    # A cold torch.compile cache per variant: the compiled grid pays its compilations inside the measured time.
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(folder / "inductor_cache")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"error: the grid failed (exit {done.returncode}): {done.stderr[-2000:]}")
    stages: dict[str, float] = {"pretext": 0.0, "downstream": 0.0}
    ok = 0
    for path in (folder / "sweep").rglob("results.json"):
        results = json.loads(path.read_text())
        ok += results.get("status") == "ok"
        for stage in stages:
            stages[stage] += float(results.get("seconds", {}).get(stage, 0.0))
    return wall, stages, ok


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline grid")
    parser.add_argument("--compare", choices=("reuse", "fast_path"), default="reuse",
                        help="baseline: pretext.reuse=false (reuse) or trainer.channels_last=false (fast_path)")
    parser.add_argument("--with-compile", action="store_true",
                        help="fast_path: also run channels_last with trainer.compile=true")
    args, overrides = parser.parse_known_args(argv)
    print_machine("grid_time: the default grid's wall time, with and without pretext reuse")
    grid = (TINY_GRID if args.tiny else GRID) + overrides
    report = Report("grid_time")
    if args.compare == "fast_path":
        variants = [("channels_last", ["trainer.channels_last=true"])]
        variants += [("compiled", ["trainer.channels_last=true", "trainer.compile=true"])] if args.with_compile else []
        variants += [] if args.no_baseline else [("nchw", ["trainer.channels_last=false"])]
    else:
        variants = [("reuse", [])] + ([] if args.no_baseline else [("no reuse", ["pretext.reuse=false"])])
    for name, extra in variants:
        with tempfile.TemporaryDirectory(prefix="bench_grid_") as folder:
            wall, stages, ok = run_grid(grid + extra, Path(folder))
        print(f"   {name}: {wall / 60:.2f} min wall, {ok} cells ok, stage seconds {stages}", flush=True)
        target = WALL_TARGET_MIN if name in ("reuse", "channels_last") and not args.tiny else None
        report.add(f"grid wall time ({name})", "min", [wall / 60], target)
        for stage, seconds in stages.items():
            report.add(f"{stage} stage total ({name})", "min", [seconds / 60])
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
