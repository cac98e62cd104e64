"""CPU threads for cells that share a machine (hydra/launcher=parallel): a fair share of the cores each.

Measured on 2 cores (`python -m benchmarks.threads`, docs/performance.md): two processes with two torch threads
each ran 7-9x slower per process than one alone (their OpenMP threads spin on each other's cores);
OMP_WAIT_POLICY=PASSIVE recovered only part of that and slowed a process running alone by about 40%; one thread
per process gave the highest total. So each of n cells gets cores // n threads, and the wait policy is left alone.
That share is the cap of `trainer.threads=auto` in the cell (thread_policy.py): auto takes min(share, idle cores).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("ssl_lightning")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parallel_jobs(launcher: Any) -> int | None:
    """Cells run at once by the joblib launcher (n_jobs; -1 = one per core), None for other launchers."""
    target = str(getattr(launcher, "_target_", "") or "")
    if "joblib" not in target.lower():
        return None
    n_jobs = int(getattr(launcher, "n_jobs", 1) or 1)
    return usable_cores() if n_jobs < 0 else n_jobs


def share_cores(n_jobs: int) -> int:
    """Threads for one of `n_jobs` cells; runs before torch starts its OpenMP pool in this worker."""
    threads = max(1, usable_cores() // max(1, n_jobs))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)
    from ssl_lightning.training import thread_policy

    thread_policy.set_cap(threads, f"{n_jobs} cells at once share {usable_cores()} cores")
    log.info("%d cells at once on %d cores: %d torch thread(s) per cell", n_jobs, usable_cores(), threads)
    return threads
