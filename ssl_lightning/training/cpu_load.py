"""What the usable cores are doing: per-core idle time from /proc/stat, the cgroup CPU quota, this process's own
CPU use (its direct children included: DataLoader workers are our load, not a neighbour's). The parsers take text,
so they are tested on fabricated samples; thread_policy.py decides from what they find.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

SAMPLE_S = 0.15  # /proc/stat ticks at 100 Hz: 15 ticks per core, enough to tell an idle core from a busy one
PROC_STAT = Path("/proc/stat")
CGROUP_ROOT = Path("/sys/fs/cgroup")

CpuTimes = dict[int, tuple[int, int, int]]  # core -> (idle ticks, niced ticks, all ticks)


def parse_proc_stat(text: str) -> CpuTimes:
    """Per-core (idle + iowait, nice, total) ticks from /proc/stat text (the `cpuN ...` lines; guest time is
    already in user time, so only the first 8 columns add up)."""
    times: CpuTimes = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue
        values = [int(v) for v in rest.split()[:8]]
        times[int(name[3:])] = (values[3] + (values[4] if len(values) > 4 else 0), values[1], sum(values))
    return times


def idle_cores(before: CpuTimes, after: CpuTimes, cores: set[int], niced_is_free: bool = False) -> float:
    """Sum of the idle shares of `cores` between two samples (a core with no ticks in between counts idle).

    `niced_is_free`: time of niced processes (nice > 0) counts as free. Our process at nice 0 outweighs them in the
    kernel's fair scheduler (nice 10 has about a tenth of nice 0's weight), so they hand their core over: measured
    beside one busy loop (`python -m benchmarks.busy_machine`), two threads stayed ahead of one at nice 19 and
    level at nice 10, while an equal-priority loop made two threads 2-3x slower than one."""
    total = 0.0
    for core in cores & before.keys() & after.keys():
        idle = after[core][0] - before[core][0]
        if niced_is_free:
            idle += after[core][1] - before[core][1]
        ticks = after[core][2] - before[core][2]
        total += min(1.0, idle / ticks) if ticks > 0 else 1.0
    return total


def own_niceness() -> int:
    """This process's nice value (0 for a normal process)."""
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return 0


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 cpu.max ("max 100000" or "<quota> <period>") as cores; None when unlimited."""
    parts = text.split()
    if not parts or parts[0] == "max":
        return None
    period = int(parts[1]) if len(parts) > 1 else 100_000
    return int(parts[0]) / period if period > 0 else None


def parse_cfs(quota: str, period: str) -> float | None:
    """cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us as cores; None when unlimited (quota -1)."""
    quota_us, period_us = int(quota.strip()), int(period.strip())
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _limits_up(folder: Path, root: Path, read_limit) -> list[float]:
    """The limits of a cgroup folder and its parents up to the mount root (a parent's quota bounds its children)."""
    found = []
    while True:
        limit = read_limit(folder)
        if limit is not None:
            found.append(limit)
        if folder == root or root not in folder.parents:
            return found
        folder = folder.parent


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, cgroups: str | None = None) -> float | None:
    """The tightest CPU quota (in cores) of this process's cgroups (`cgroups`: /proc/self/cgroup's text), v2 and
    v1, their parents included; None when there is none."""
    cgroups = (_read(Path("/proc/self/cgroup")) or "") if cgroups is None else cgroups
    found: list[float] = []
    for line in cgroups.splitlines():
        _, controllers, path = line.split(":", 2) if line.count(":") >= 2 else ("", "", "")
        relative = path.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            v2_root = root / "unified" if (root / "unified").is_dir() else root

            def v2(folder: Path) -> float | None:
                text = _read(folder / "cpu.max")
                return parse_cpu_max(text) if text else None

            found += _limits_up(v2_root / relative, v2_root, v2)
        elif "cpu" in controllers.split(","):
            v1_root = next((root / name for name in ("cpu", "cpu,cpuacct") if (root / name).is_dir()), None)
            if v1_root is None:
                continue

            def v1(folder: Path) -> float | None:
                quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
                return parse_cfs(quota, period) if quota and period else None

            found += _limits_up(v1_root / relative, v1_root, v1)
    return min(found) if found else None


def usable_cores() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def own_cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its direct children (DataLoader workers)."""
    total = time.process_time()
    me = os.getpid()
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        entries = [entry for entry in os.listdir("/proc") if entry.isdigit()]
    except OSError:
        return total
    for entry in entries:
        text = _read(Path("/proc") / entry / "stat")
        if not text:
            continue
        fields = text.rpartition(")")[2].split()  # after the command name, which may hold spaces
        if len(fields) > 12 and fields[1] == str(me):
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


@dataclass(frozen=True)
class Load:
    """What one sample saw on the usable cores."""

    usable: int
    free: float  # idle cores plus our own use, in cores
    others: float  # cores busy with other processes


def sample_load(seconds: float = SAMPLE_S) -> Load | None:
    """Idle and foreign load over `seconds` (this thread sleeps meanwhile); None without /proc/stat."""
    cores = usable_cores()
    first = _read(PROC_STAT)
    if first is None:
        return None
    own_before, started = own_cpu_seconds(), time.perf_counter()
    time.sleep(seconds)
    second = _read(PROC_STAT)
    own, elapsed = own_cpu_seconds() - own_before, time.perf_counter() - started
    if second is None:
        return None
    niced_is_free = own_niceness() <= 0  # a niced cell of ours would be on their side of the weights
    free = min(float(len(cores)), idle_cores(parse_proc_stat(first), parse_proc_stat(second), cores, niced_is_free)
               + own / max(elapsed, 1e-6))
    return Load(len(cores), free, max(0.0, len(cores) - free))
