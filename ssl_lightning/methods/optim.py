"""Optimizer and learning-rate schedule settings shared by the pretext and downstream stages.

`exclude_norm_bias` leaves BatchNorm (every 1-D parameter: norm weights and biases) out of the weight decay,
as SimCLR, BYOL and Barlow Twins do; `lars` is the layer-wise adaptive SGD of You et al. 2017 as those papers
use it (ssl_lightning/methods/lars.py), which always excludes those parameters from decay and adaptation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ssl_lightning.errors import UserError
from ssl_lightning.methods.lars import LARS
from ssl_lightning.schema_fields import SECTION, SHARES_OF_RUN, field_problems, setting

OPTIMIZERS = ("sgd", "adam", "adamw", "lars")
SCHEDULERS = ("cosine", "step", "constant")


@dataclass(frozen=True)
class OptimConfig:
    """The optimiser keys of `pretext:` and `downstream:` (their section decides the stage they key)."""

    optimizer: str = setting("sgd", "|".join(OPTIMIZERS), "the optimiser (lars: You et al. 2017, as SimCLR, BYOL "
                             "and Barlow Twins use it)", SECTION)
    lr: float = setting(0.1, ">0", "base learning rate", SECTION)
    weight_decay: float = setting(5e-4, ">=0", "L2 weight decay", SECTION)
    momentum: float = setting(0.9, "[0, 1]", "SGD/LARS momentum", SECTION)
    nesterov: bool = setting(True, "", "Nesterov momentum (sgd, lars)", SECTION)
    scheduler: str = setting("cosine", "|".join(SCHEDULERS), "learning-rate schedule after the warm-up", SECTION)
    warmup_epochs: int = setting(0, ">=0", "epochs of linear learning-rate warm-up", SECTION)
    step_milestones: tuple[float, ...] = setting((0.3, 0.6, 0.8), SHARES_OF_RUN, "scheduler=step: shares of the "
                                                 "run where the lr drops (RotNet: 60/120/160 of 200)", SECTION)
    step_gamma: float = setting(0.2, "(0, 1]", "scheduler=step: the lr factor at each milestone", SECTION)
    exclude_norm_bias: bool = setting(False, "", "no weight decay on 1-D parameters (BatchNorm, biases), as SimCLR, "
                                      "BYOL and Barlow Twins do; lars: always", SECTION)
    trust_coefficient: float = setting(0.001, ">0", "LARS's eta (optimizer=lars)", SECTION)

    def validate(self, where: str) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"{where}.optimizer={self.optimizer!r} unknown; valid: {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise UserError(f"{where}.scheduler={self.scheduler!r} unknown; valid: {', '.join(SCHEDULERS)}")
        problems = field_problems(self, where)  # every range its fields declare (lr > 0, LARS's eta > 0, ...)
        if problems:
            raise UserError("; ".join(problems))


def is_norm_or_bias(param: torch.Tensor) -> bool:
    """BatchNorm/LayerNorm scales and shifts and every bias: the 1-D parameters (the papers' rule)."""
    return param.ndim <= 1


def parameter_groups(params, config: OptimConfig) -> list[dict]:
    """One group, or (exclude_norm_bias or LARS) weights and norm/bias apart: the latter without weight decay
    and, under LARS, without the layer-wise adaptation."""
    params = list(params)
    if not (config.exclude_norm_bias or config.optimizer == "lars"):
        return [{"params": params}]
    weights = [p for p in params if not is_norm_or_bias(p)]
    others = [p for p in params if is_norm_or_bias(p)]
    groups = [{"params": weights}] if weights else []
    if others:
        groups.append({"params": others, "weight_decay": 0.0, "lars_adapt": False})
    return groups


def build_optimizer(params, config: OptimConfig) -> torch.optim.Optimizer:
    params = parameter_groups(params, config)
    if config.optimizer == "lars":
        return LARS(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                    weight_decay=config.weight_decay, trust_coefficient=config.trust_coefficient)
    for group in params:
        group.pop("lars_adapt", None)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: OptimConfig, step: int, total_steps: int, steps_per_epoch: int = 1) -> float:
    """Multiplier of the base lr at optimiser `step` (0-based): linear warm-up over `warmup_epochs` epochs' worth of
    steps, then the schedule over the remaining steps. Advancing per step, not per epoch, keeps a short run's
    cosine smooth (4 epochs were a 4-step staircase) and gives a few-label run of one-step epochs the same curve."""
    warmup = config.warmup_epochs * max(1, steps_per_epoch)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.scheduler == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if config.scheduler == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    passed = sum(progress >= milestone for milestone in config.step_milestones)
    return config.step_gamma**passed


def schedule_length(trainer, epochs: int = 1) -> tuple[int, int]:
    """(optimiser steps of the whole run, steps per epoch) of a Lightning Trainer inside configure_optimizers;
    without a Trainer (a module used on its own) one step per epoch of `epochs`."""
    if trainer is None:
        return max(1, epochs), 1
    total = trainer.estimated_stepping_batches
    total = int(total) if math.isfinite(total) else 1
    per_epoch = trainer.num_training_batches
    per_epoch = int(per_epoch) if math.isfinite(per_epoch) else 1
    accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
    return max(1, total), max(1, per_epoch // accumulate)


def configure(module_params, config: OptimConfig, trainer, total_steps: int | None = None, epochs: int = 1) -> dict:
    """Lightning's configure_optimizers return value: optimizer plus a LambdaLR stepped after every optimiser step.

    `total_steps` overrides the schedule's length (a refit stopped at a chosen step follows the schedule of the
    full-length runs it was chosen on)."""
    optimizer = build_optimizer(module_params, config)
    run_steps, steps_per_epoch = schedule_length(trainer, epochs)
    total_steps = total_steps or run_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config, step, total_steps, steps_per_epoch))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
