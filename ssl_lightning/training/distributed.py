"""Which process of a distributed launch this is, and agreeing with rank 0, before Lightning sets anything up.

The pipeline decides things before the first Trainer exists (write the label subset, take the pretext
store lock, reuse or train). Rank numbers then come only from the launcher's environment variables:
torchrun sets RANK; Lightning's own re-launch of the script sets LOCAL_RANK (and NODE_RANK) for the
processes it starts; `srun` sets only SLURM_PROCID. LOCAL_RANK is read before SLURM_PROCID because
processes that Lightning starts inside a SLURM batch step inherit its SLURM_PROCID=0.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from ssl_lightning.atomic import write_json

LAUNCH_VARIABLE = "SSL_LIGHTNING_LAUNCH"
_published: dict[str, int] = {}


def rank_variable() -> str | None:
    """The environment variable that numbers this process, or None for a process started on its own."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ:
            return name
    return None


def is_global_zero() -> bool:
    """True in the one process of a launch that takes locks and writes a run's files."""
    name = rank_variable()
    if name is None:
        return True
    if name == "LOCAL_RANK":  # Lightning's re-launch, possibly one script per node
        node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
        return int(os.environ["LOCAL_RANK"]) == 0 and node == 0
    return int(os.environ[name]) == 0


def launch_id() -> str:
    """The same in every process of one launch (one SLURM job, one torchrun, one script and its re-launches).

    Lightning re-launches copy the environment of rank 0, so the id rank 0 draws here reaches them.
    """
    if os.environ.get(LAUNCH_VARIABLE):
        return os.environ[LAUNCH_VARIABLE]
    if "SLURM_JOB_ID" in os.environ:
        value = f"slurm{os.environ['SLURM_JOB_ID']}-{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    elif "TORCHELASTIC_RUN_ID" in os.environ:
        value = f"torchrun{os.environ['TORCHELASTIC_RUN_ID']}-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    else:
        value = uuid.uuid4().hex
    os.environ[LAUNCH_VARIABLE] = value
    return value


def _note_path(folder: Path, topic: str) -> Path:
    """Every process counts its own notes per topic; ranks go through the cells of a sweep in the same order."""
    count = _published.get(topic, 0)
    _published[topic] = count + 1
    return Path(folder) / f"{topic}.{launch_id()}.{count}.json"


def share_from_rank_zero(folder: Path, topic: str, value: dict[str, Any] | None = None,
                         poll_s: float = 0.5, timeout_s: float | None = None) -> dict[str, Any]:
    """Rank 0 passes `value` and returns it; every other rank waits for rank 0's value on the same topic.

    For decisions that must be the same everywhere but are taken before a process group exists, such as
    "reuse the stored encoder or train it": rank 0 may have waited for another job's lock meanwhile.
    `folder` must be shared by all ranks (the pretext store is). No timeout by default: rank 0 can wait
    for a lock for as long as another job trains.
    """
    path = _note_path(folder, topic)
    if is_global_zero():
        if value is None:
            raise ValueError("rank 0 must pass the value to share")
        write_json(path, value)
        return value
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not path.is_file():
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{rank_variable()}={os.environ.get(rank_variable() or '', '?')} waited "
                               f"{timeout_s} s for rank 0's {path.name}")
        time.sleep(poll_s)
    return json.loads(path.read_text())


def forget_shared(folder: Path, topic: str) -> None:
    """Rank 0 removes this launch's notes on a topic once every rank is known to have read them."""
    for path in Path(folder).glob(f"{topic}.{launch_id()}.*.json"):
        path.unlink(missing_ok=True)
