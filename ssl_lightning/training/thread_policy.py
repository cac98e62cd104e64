"""Torch CPU threads chosen by what the machine has free: `trainer.threads=auto|N` (issue 33).

Why: torch's CPU backend here is OpenMP (libgomp), whose threads spin at every barrier waiting for the slowest
one. With one of 2 cores held by another process, 2 threads ran 3.5x slower than 1 (431 vs 1,517 img/s, SimCLR
on Fashion-MNIST; `python -m benchmarks.busy_machine`). So `auto` gives torch only the cores that are idle: when a
cell and each training stage start, a short /proc/stat sample (cpu_load.py) counts the idle share of every usable
core, our own process's CPU use in that time counted as free (we are not another's load), and a core counts when
at least 1 - IDLE_MARGIN of it is free. At least 1 thread, at most the cap: torch's thread count when the process
first applied the policy (OMP_NUM_THREADS, hydra/launcher=parallel's fair share in cell_threads.py, else torch's
default: the physical cores), divided among the training processes of this node (DDP ranks), and the cgroup's CPU
quota. Training re-checks at epoch starts at most every RECHECK_S (cost <= 1%): torch.set_num_threads may change
between epochs. A number N is used as given.

On a GPU machine the same policy applies to the CPU threads that feed the GPU (batch gathers, augmentation on the
CPU, kernel launches): the GPU computes either way, and the threads only decide how much a busy CPU slows the
feeding. Under SLURM (or any cgroup/cpuset) the job's affinity mask (`os.sched_getaffinity`, e.g.
--cpus-per-task) and the cgroup CPU quota (v2 cpu.max, v1 cpu.cfs_quota_us) bound the usable cores, and only those
cores are sampled, so neighbours pinned to other cores do not count. Without /proc/stat (macOS, Windows) auto
uses the cap.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer

from ssl_lightning.training.cpu_load import Load, cgroup_cpu_limit, sample_load

log = logging.getLogger("ssl_lightning")

AUTO = "auto"
# A core counts as idle when >= 75% of it is free. Cautious on purpose: a thread too many beside a busy core cost
# 3.5-5.7x (issue 33), a thread too few on 2 cores at most the 1.6x between 2 threads and 1.
IDLE_MARGIN = 0.25
FRESH_S = 5.0  # a stage starting within this time of the last sample reuses it
CELL_START = "cell start"
RECHECK_S = 20.0  # epoch-start re-checks at most this often: a 0.15 s sample costs <= 0.75%


@dataclass(frozen=True)
class Decision:
    policy: str | int
    threads: int
    reason: str
    where: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "threads": self.threads, "reason": self.reason}


def decide(policy: str | int, cap: int, load: Load | None, quota: float | None = None,
           cap_reason: str = "") -> Decision:
    """The thread count for `policy` (pure: the sample and the limits are given)."""
    if policy != AUTO:
        return Decision(policy, int(policy), f"as set: {policy} torch thread{'' if int(policy) == 1 else 's'}")
    limit, why = max(1, cap), cap_reason or f"cap {cap}"
    if quota is not None and math.floor(quota) < limit:
        limit, why = max(1, math.floor(quota)), f"cgroup CPU quota {quota:g} cores"
    if limit == 1:
        return Decision(AUTO, 1, f"1 torch thread ({why})")
    if load is None:
        return Decision(AUTO, limit, f"no /proc/stat to sample: {limit} torch threads ({why})")
    idle = max(0, math.floor(load.free + IDLE_MARGIN))
    threads = max(1, min(limit, idle))
    bound = f", at most {limit} ({why})" if limit < idle else ", at least 1" if idle == 0 else ""
    plural = "" if threads == 1 else "s"
    return Decision(AUTO, threads, f"{idle} of {load.usable} cores idle (load from other processes "
                                   f"~{load.others:.1f}){bound}: {threads} torch thread{plural}")


@dataclass
class _State:
    cap: int | None = None  # torch's thread count before the policy first ran in this process
    cap_reason: str = ""
    last_load: Load | None = None
    sampled_at: float = -math.inf
    history: list[Decision] = field(default_factory=list)


_state = _State()


def cap() -> tuple[int, str]:
    """The most threads auto gives, and why: torch's count when this is first called in the process (unless
    `set_cap` said otherwise)."""
    if _state.cap is None:
        threads = torch.get_num_threads()
        env = os.environ.get("OMP_NUM_THREADS", "").strip()
        set_cap(threads, f"OMP_NUM_THREADS={env}" if env == str(threads)
                else f"torch's {threads} thread{'' if threads == 1 else 's'}")
    assert _state.cap is not None
    return _state.cap, _state.cap_reason


def set_cap(threads: int, reason: str) -> None:
    """The most threads auto gives in this process from now on (hydra/launcher=parallel's share per cell)."""
    _state.cap, _state.cap_reason = max(1, threads), reason


def parse_policy(value: Any) -> str | int:
    """`auto` or a whole number >= 1 (validated before: config/validation.py)."""
    return AUTO if value == AUTO else int(value)


def apply(policy: str | int, where: str, processes: int = 1, fresh_s: float = FRESH_S) -> Decision:
    """Choose and set torch's threads for what starts now (`where`: cell start, a stage, an epoch); logs a choice
    that changes the count, and every cell-start choice."""
    policy = parse_policy(policy)
    most, why = cap()
    if processes > 1:
        most, why = max(1, most // processes), f"{why} shared by {processes} processes"
    quota = cgroup_cpu_limit() if policy == AUTO else None
    load = None
    if policy == AUTO and min(most, quota or most) >= 2:  # with at most 1 core there is nothing to sample
        if time.monotonic() - _state.sampled_at > fresh_s:
            _state.last_load, _state.sampled_at = sample_load(), time.monotonic()
        load = _state.last_load
    chosen = decide(policy, most, load, quota, why)
    decision = Decision(chosen.policy, chosen.threads, chosen.reason, where)
    changed = decision.threads != torch.get_num_threads()
    if changed:
        torch.set_num_threads(decision.threads)
    if changed or where == CELL_START:
        log.info("trainer.threads=%s at %s: %s", policy, where, decision.reason)
    _state.history.append(decision)
    return decision


def mark() -> int:
    """A position in this process's decisions, for `cell_record`."""
    return len(_state.history)


def cell_record(since: int) -> dict[str, Any] | None:
    """results.json's `threads`: the cell-start choice, and every later one that changed the count."""
    decisions = _state.history[since:]
    if not decisions:
        return None
    record = decisions[0].as_json()
    changes, current = [], decisions[0].threads
    for decision in decisions[1:]:
        if decision.threads != current:
            changes.append({"at": decision.where, "threads": decision.threads, "reason": decision.reason})
            current = decision.threads
    record["changes"] = changes
    return record


class ThreadPolicyCallback(Callback):
    """Applies the policy when training starts (threads shared among this node's processes) and re-checks at epoch
    starts, at most every RECHECK_S."""

    def __init__(self, policy: str | int, stage: str, recheck_s: float = RECHECK_S):
        self.policy, self.stage, self.recheck_s = parse_policy(policy), stage, recheck_s
        self._checked_at = -math.inf

    def _apply(self, trainer: Trainer, where: str) -> None:
        apply(self.policy, where, processes=max(1, int(getattr(trainer, "num_devices", 1) or 1)))
        self._checked_at = time.monotonic()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._apply(trainer, f"{self.stage} stage start")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.policy == AUTO and time.monotonic() - self._checked_at >= self.recheck_s:
            self._apply(trainer, f"{self.stage} epoch {trainer.current_epoch}")
