"""How long a downstream run trains, counted in optimiser steps, and how often it is validated.

At few labels an epoch is one step (100 labels, batch 128), so a budget in epochs is a budget of a handful of
steps: supervised from scratch at 10 labels per class scored 24% after the default 16 one-step epochs and 63%
after 100 steps (docs/guide.md). `downstream.min_steps` sets a floor of optimiser steps: the run is lengthened
to whole multiples of `downstream.epochs`, so it is still validated `downstream.epochs` times, evenly spaced, and
early stopping's patience counts those validation checks, not one-step epochs. Lightning's `min_steps` keeps early
stopping from ending the run before the floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# downstream.min_steps: supervised from scratch at 10 labels per class on Fashion-MNIST (docs/guide.md) reached
# its plateau by about 100 steps (16 steps: 20-24%; 100-400 steps: 59-64%); twice that leaves room for encoders
# that start further from it, at about 13 s of one core per cell.
DEFAULT_MIN_STEPS = 200


@dataclass(frozen=True)
class StepPlan:
    steps_per_epoch: int  # optimiser steps in one pass over the labelled images (per process)
    epochs: int  # max_epochs of the Trainer
    eval_every: int  # epochs between validation checks (and `last` checkpoints)
    min_steps: int  # the floor handed to the Trainer (0: none)

    @property
    def max_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def lengthened(self) -> bool:
        return self.eval_every > 1


def batches_per_epoch(labelled: int, batch_size: int, world_size: int, limit_train_batches: float | int) -> int:
    """Steps per epoch of the labelled loader (loading.EVEN: ceil(shard / batch), shards padded to one length),
    cut by `limit_train_batches` the way Lightning cuts it (a share rounds down, at least one batch)."""
    shard = math.ceil(labelled / max(1, world_size))
    batches = max(1, math.ceil(shard / max(1, batch_size)))
    if isinstance(limit_train_batches, int) or (isinstance(limit_train_batches, float)
                                                and limit_train_batches > 1):
        return min(batches, int(limit_train_batches))
    return max(1, int(batches * float(limit_train_batches)))


def plan_steps(labelled: int, batch_size: int, epochs: int, min_steps: int, world_size: int = 1,
               limit_train_batches: float | int = 1.0) -> StepPlan:
    """`epochs` validation checks; each `eval_every` epochs apart, enough epochs for at least `min_steps` steps."""
    per_epoch = batches_per_epoch(labelled, batch_size, world_size, limit_train_batches)
    needed = math.ceil(min_steps / per_epoch) if min_steps > 0 else 0
    every = max(1, math.ceil(needed / max(1, epochs)))
    return StepPlan(per_epoch, every * epochs, every, min_steps)


def process_count(devices: object, num_nodes: int, accelerator: str) -> int:
    """Processes a Trainer with these settings runs (DDP shards the labelled images over them)."""
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if isinstance(devices, list | tuple):
        count = len(devices)
    elif isinstance(devices, str) and devices.strip().isdigit():
        count = int(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        count = devices
    else:  # "auto" or -1: every GPU, one CPU process
        count = torch.cuda.device_count() if on_gpu else 1
    return max(1, count) * max(1, int(num_nodes))
