"""trainer.devices / precision / strategy / accelerator checked against what Lightning accepts, before training.

Lightning validates these only when the Trainer is built, i.e. after the data is loaded and, for the downstream
Trainer, after the pretext encoder was trained and stored. The accepted names are read from Lightning itself
(its precision literals, its strategy and accelerator registries), so a Lightning upgrade updates them.
"""

from __future__ import annotations

import re
import typing
from typing import Any

from ssl_lightning.errors import UserError

_GPU_LIST = re.compile(r"^\s*-?\d+\s*(,\s*\d+\s*)*,?\s*$")


def _literal_values(annotation: Any) -> list[Any]:
    arguments = typing.get_args(annotation)
    if not arguments:
        return [annotation]
    return [value for argument in arguments for value in _literal_values(argument)]


def precisions() -> list[str]:
    from lightning_fabric.connector import _PRECISION_INPUT

    return [str(value) for value in dict.fromkeys(_literal_values(_PRECISION_INPUT))]


def strategies() -> list[str]:
    from pytorch_lightning.strategies import StrategyRegistry

    return ["auto", *StrategyRegistry.available_strategies()]


def accelerators() -> list[str]:
    from pytorch_lightning.accelerators import AcceleratorRegistry

    return ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]


def _devices_ok(devices: Any, accelerator: str) -> bool:
    if devices == "auto":
        return True
    if isinstance(devices, bool):
        return False
    if accelerator == "cpu":
        return isinstance(devices, int) and devices > 0 or isinstance(devices, str) and devices.strip().isdigit() \
            and int(devices) > 0
    if isinstance(devices, int):
        return devices == -1 or devices > 0
    if isinstance(devices, list | tuple):
        return bool(devices) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices)
    if isinstance(devices, str):
        return bool(_GPU_LIST.match(devices)) and devices.strip() not in ("0", "-0")
    return False


def check_trainer(trainer: Any) -> None:
    """One line naming the first trainer setting Lightning would refuse (TrainerSettings or alike)."""
    accelerator = str(trainer.accelerator)
    if accelerator not in accelerators():
        raise UserError(f"trainer.accelerator={accelerator} is not one Lightning knows; use one of "
                        f"{', '.join(accelerators())}")
    if not _devices_ok(trainer.devices, accelerator):
        valid = ("a whole number >= 1 or auto" if accelerator == "cpu"
                 else "a whole number >= 1, -1 (all), a list of GPU indices such as [0,1], or auto")
        raise UserError(f"trainer.devices={trainer.devices} is invalid for accelerator {accelerator}: use {valid}")
    if str(trainer.precision) not in precisions():
        raise UserError(f"trainer.precision={trainer.precision} is not one Lightning accepts; use one of "
                        f"{', '.join(p for p in precisions() if '-' in p)}")
    if accelerator == "cpu" and str(trainer.precision) in ("16", "16-mixed"):
        raise UserError(f"trainer.precision={trainer.precision} needs a GPU; on the CPU use bf16-mixed or 32-true")
    strategy = trainer.strategy
    if not isinstance(strategy, str) or strategy not in strategies():
        raise UserError(f"trainer.strategy={strategy} is not one Lightning knows; use auto, ddp, ddp_spawn, fsdp "
                        "or another registered strategy")
    if not isinstance(trainer.num_nodes, int) or isinstance(trainer.num_nodes, bool) or trainer.num_nodes < 1:
        raise UserError(f"trainer.num_nodes={trainer.num_nodes} must be a whole number >= 1")
