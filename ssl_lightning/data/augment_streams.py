"""Random streams for the batched augmentation: one per (seed, rank, epoch), reproducible, different per rank.

`seed_everything(seed)` gives every DDP process the same global generator, so augmentations drawn from it would
give the k-th image of every rank rank 0's crop, jitter and flip. Instead the trainer carries an
`AugmentStreams` callback: at the start of each training epoch it seeds a fresh generator from (seed, rank,
epoch), so ranks differ, a rerun draws the same views, and a run resumed at an epoch boundary continues with
the views the uninterrupted run would have drawn. Validation draws from its own stream, seeded from (seed,
rank) alone: every validation epoch sees the same views, so the validation loss curve compares like with like.
The callback also carries the run-wide stain jitter (`data.hed_jitter`), so every pipeline applies the same.

Modules ask `augment_options(self)` for the keyword arguments of the augmentation functions; outside a
Trainer (tests, benchmarks) that is torch's global generator and no stain jitter.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

_PHASES = {"train": 0, "val": 1}


def stream_seed(seed: int, rank: int, epoch: int, phase: str) -> int:
    """A well-mixed 63-bit seed for one stream (numpy's SeedSequence: nearby inputs give unrelated streams)."""
    state = np.random.SeedSequence([int(seed) % 2**64, rank, epoch, _PHASES[phase]]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


class AugmentStreams(Callback):
    """Per-rank, per-epoch generators for the training and validation augmentation, and the stain jitter."""

    def __init__(self, seed: int, hed_jitter: float = 0.0):
        self.seed, self.hed_jitter = int(seed), float(hed_jitter)
        self._seeds: dict[str, int] = {}
        self._generators: dict[str, torch.Generator] = {}

    def begin(self, phase: str, rank: int, epoch: int) -> None:
        """Start `phase`'s stream afresh for this rank and epoch (the generator is made on first use)."""
        self._seeds[phase] = stream_seed(self.seed, rank, epoch, phase)
        self._generators.pop(phase, None)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.begin("train", trainer.global_rank, trainer.current_epoch)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.begin("val", trainer.global_rank, 0)

    def generator(self, phase: str, device: torch.device) -> torch.Generator | None:
        """The phase's generator on `device`; None before its first epoch started (then the global one)."""
        if phase not in self._seeds:
            return None
        generator = self._generators.get(phase)
        if generator is None:  # made once per epoch: a fresh one per call would repeat the same draws
            generator = torch.Generator(device=device).manual_seed(self._seeds[phase])
            self._generators[phase] = generator
        return generator


def streams_of(module: pl.LightningModule) -> AugmentStreams | None:
    """The trainer's AugmentStreams callback, or None outside a Trainer or without one."""
    trainer = module._trainer
    if trainer is None:
        return None
    return next((callback for callback in trainer.callbacks if isinstance(callback, AugmentStreams)), None)


def augment_options(module: pl.LightningModule) -> dict[str, Any]:
    """`generator` and `hed_jitter` for the augmentation functions, from the module's trainer."""
    streams = streams_of(module)
    if streams is None:
        return {"generator": None, "hed_jitter": 0.0}
    phase = "train" if module.training else "val"
    return {"generator": streams.generator(phase, module.device), "hed_jitter": streams.hed_jitter}
