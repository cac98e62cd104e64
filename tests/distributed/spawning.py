"""Start N real processes for a distributed test and wait for them with a deadline.

`torch.multiprocessing.spawn` joins without a timeout; a collective that never completes (a rank
that skips an all_gather, mismatched shapes) must fail the test instead of hanging the suite.
Processes are forked where the platform allows: they inherit the imported torch and Lightning
(spawning re-imports them, about 10 s of the 2 test cores); CPU-only work is fork-safe.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def use_ranks_from_environment(rank: int, world_size: int, port: int) -> None:
    """The variables torchrun or Lightning's own launcher give each process; Lightning then launches nothing."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank), NODE_RANK="0")


def run_processes(worker: Callable, args: tuple, world_size: int = 2, timeout: float = 240.0) -> None:
    """Run `worker(rank, *args)` in `world_size` spawned processes; raise if one fails or the deadline passes."""
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    context = mp.start_processes(worker, args=args, nprocs=world_size, join=False, start_method=method)
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1.0):  # raises ProcessRaisedException / ProcessExitedException on failure
        if time.monotonic() > deadline:
            for process in context.processes:
                if process.is_alive():
                    process.kill()
            raise TimeoutError(f"distributed workers did not finish within {timeout:.0f} s (a collective hung?)")
