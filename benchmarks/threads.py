"""Thread set-up for several processes on few cores: torch threads and OMP_WAIT_POLICY, alone and under load.

Each configuration starts 1 or 2 worker processes at once; each worker runs the same fixed workload (compact
encoder, rotation pretext steps at batch 128, 28 px) and reports its images/s. "Total" sums the workers: the
machine's throughput. OpenMP's default wait policy lets idle threads spin, which is harmless alone and ruinous
when two processes' threads compete for the same cores.

    python -m benchmarks.threads [--tiny] [--repeats N]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks.common import Report, base_parser, print_machine, repeats_from


@dataclass(frozen=True)
class Config:
    name: str
    processes: int
    threads: int
    passive: bool


CONFIGS = (
    Config("alone, 2 threads", 1, 2, False),
    Config("alone, 2 threads, PASSIVE", 1, 2, True),
    Config("alone, 1 thread", 1, 1, False),
    Config("2 processes x 2 threads", 2, 2, False),
    Config("2 processes x 2 threads, PASSIVE", 2, 2, True),
    Config("2 processes x 1 thread", 2, 1, False),
    Config("2 processes x 1 thread, PASSIVE", 2, 1, True),
)

WORKER = """
import sys, time, torch
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
steps, batch, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
module = RotationPretext(build_encoder(BackboneConfig(), 1, 28), OptimConfig(), epochs=1).train()
optimizer = module.configure_optimizers()["optimizer"]
images = torch.rand(batch, 1, 28, 28)
def step():
    loss, _ = module.pretext_step(images)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
step()
started = time.perf_counter()
for _ in range(steps):
    step()
print(batch * steps / (time.perf_counter() - started))
"""


def run_config(config: Config, steps: int, batch: int) -> list[float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(config.threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if config.passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(steps), str(batch), str(config.threads)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for _ in range(config.processes)]
    rates = []
    for worker in workers:
        out, err = worker.communicate(timeout=1800)
        if worker.returncode != 0:
            raise SystemExit(f"error: worker failed: {err[-1500:]}")
        rates.append(float(out.strip().splitlines()[-1]))
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    args = parser.parse_args(argv)
    steps, batch = (2, 8) if args.tiny else (30, 128)
    repeats = repeats_from(args, tiny_default=1, default=2)
    print_machine("threads: torch threads and OMP_WAIT_POLICY, one process alone and two at once")
    report = Report("threads")
    for config in CONFIGS:
        per_process, totals = [], []
        for _ in range(repeats):
            time.sleep(0.5)
            rates = run_config(config, steps, batch)
            per_process.extend(rates)
            totals.append(sum(rates))
        report.add(f"{config.name}: per process", "img/s", per_process)
        report.add(f"{config.name}: total", "img/s", totals)
        print(f"   {config.name}: per process {json.dumps([round(r) for r in per_process])} img/s", flush=True)
    report.finish(args.json, args.tiny)


if __name__ == "__main__":
    main()
