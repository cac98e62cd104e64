"""Typed run settings built once from the Hydra config at the edge (`pipeline.run`).

Everything below the pipeline receives these small dataclasses, never the raw `cfg`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssl_lightning.config.validation import check_values
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import PROTOCOLS
from ssl_lightning.evaluation.downstream_selection import (
    DEFAULT_CV_FOLDS,
    MONITORS,
    SELECT_ALIASES,
    SELECTS,
    no_validation_message,
)
from ssl_lightning.evaluation.fixmatch import check_fixmatch
from ssl_lightning.evaluation.step_plan import DEFAULT_MIN_STEPS
from ssl_lightning.methods import registry
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.methods.registry import MethodParams
from ssl_lightning.methods.supervised_features import refuse_finetuning
from ssl_lightning.models.backbones import BackboneConfig, check_backbone
from ssl_lightning.probes.config import DEFAULT_PENALTY_GRID, KNN, check_raw_pixels, frozen_probe_fields, is_frozen

HEADS = ("linear", "mlp")


def _pick(cls, values: dict[str, Any], where: str):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown {where} option(s) {unknown}; valid: {sorted(known)}")
    return cls(**values)


def _refuse_unknown(values: dict[str, Any], known: set[str], where: str) -> None:
    """One line naming the keys of a section that nothing reads (a typo would otherwise be ignored)."""
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"unknown {where} option(s) {[f'{where}.{k}' for k in unknown]}; valid: {sorted(known)}")


OPTIM_KEYS = frozenset(f.name for f in fields(OptimConfig))


def _optim(values: dict[str, Any], where: str, other_keys: set[str]) -> OptimConfig:
    """The optimiser of a section whose other keys are `other_keys`; any key neither names is refused."""
    _refuse_unknown(values, set(OPTIM_KEYS) | other_keys, where)
    chosen = {k: v for k, v in values.items() if k in OPTIM_KEYS}
    if "step_milestones" in chosen:
        chosen["step_milestones"] = tuple(chosen["step_milestones"])
    optim = OptimConfig(**chosen)
    optim.validate(where)
    return optim


@dataclass(frozen=True)
class PretextSettings:
    epochs: int
    batch_size: int
    optim: OptimConfig
    reuse: bool
    limit_train_batches: float
    limit_val_batches: float
    params: MethodParams | None  # the chosen method's typed hyper-parameters (its own config section)


@dataclass(frozen=True)
class DownstreamSettings:
    protocol: str
    head: str
    epochs: int
    batch_size: int
    optim: OptimConfig
    augment: bool
    limit_train_batches: float
    limit_val_batches: float
    patience: int | None = 5  # validation checks (not epochs) without a better metric before stopping
    min_steps: int = DEFAULT_MIN_STEPS  # optimiser steps at least (step_plan lengthens few-label runs)
    lr_grid: tuple[float, ...] | None = None
    probe_layer: str | int = "last"
    monitor: str = "auto"  # acc | balanced_acc | auto (downstream_selection.resolve_monitor)
    # auto | val | cv | last (downstream_selection.SELECTS; `best` is read as `val`); fine-tuning: val | last
    select: str = "auto"
    cv_folds: int = DEFAULT_CV_FOLDS  # folds of the labelled set under select=cv (fewer when a class is smaller)
    # frozen-feature probes (frozen_stage.py); solver: lbfgs | sgd (linear), sgd (finetune), None (knn)
    solver: str | None = None
    penalty_grid: tuple[float, ...] = DEFAULT_PENALTY_GRID  # scikit-learn's C, chosen on validation
    max_iter: int = 100  # L-BFGS iterations per penalty (scikit-learn's default)
    penalty_patience: int | None = 3  # stop the penalty path after this many C values without a better one
    k: int = 20
    k_grid: tuple[int, ...] | None = None  # chosen on validation when set
    temperature: float = 0.07
    metric: str = "cosine"


@dataclass(frozen=True)
class TrainerSettings:
    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    sync_batchnorm: bool = False
    channels_last: bool | str = "auto"  # true | false | auto (trainer_factory.use_channels_last)
    compile: bool = False
    benchmark: bool = False
    deterministic: bool = False
    enable_progress_bar: bool = True
    log_every_n_steps: int = 10
    threads: str | int = "auto"  # torch CPU threads: auto (the idle cores, training/thread_policy.py) or N


@dataclass(frozen=True)
class RunSettings:
    experiment: str
    method: str | None  # the registered pretext method (= the experiment name); None for supervised
    seed: int
    data: DataConfig
    backbone: BackboneConfig
    pretext: PretextSettings
    downstream: DownstreamSettings
    trainer: TrainerSettings
    cache_dir: Path
    config: dict[str, Any]
    pretext_data: dict[str, dict[str, Any]]


PRETEXT_KEYS = {f.name for f in fields(PretextSettings)} - {"optim", "params"}


def _pretext(values: dict[str, Any], params: MethodParams | None) -> PretextSettings:
    return PretextSettings(
        epochs=int(values["epochs"]), batch_size=int(values["batch_size"]),
        optim=_optim(values, "pretext", PRETEXT_KEYS),
        reuse=bool(values.get("reuse", True)), limit_train_batches=values.get("limit_train_batches", 1.0),
        limit_val_batches=values.get("limit_val_batches", 1.0),
        params=params,
    )


def _downstream(values: dict[str, Any], data: DataConfig) -> DownstreamSettings:
    protocol, head = values.get("protocol", "finetune"), values.get("head", "linear")
    if protocol not in (*PROTOCOLS, KNN):
        raise UserError(f"unknown protocol {protocol!r}; valid: {', '.join((*PROTOCOLS, KNN))} (downstream=<name>)")
    if head not in HEADS:
        raise UserError(f"downstream.head={head!r} unknown; valid: {', '.join(HEADS)}")
    probe = frozen_probe_fields(values, protocol, head)
    stage = DownstreamSettings(
        protocol=protocol, head=head, epochs=int(values.get("epochs", 1)),
        batch_size=int(values.get("batch_size", 1)),
        optim=_optim(values, "downstream", {f.name for f in fields(DownstreamSettings)} - {"optim"}),
        augment=bool(values.get("augment", True)),
        limit_train_batches=values.get("limit_train_batches", 1.0),
        limit_val_batches=values.get("limit_val_batches", 1.0),
        patience=_patience(values.get("patience")), min_steps=int(values.get("min_steps", DEFAULT_MIN_STEPS)),
        lr_grid=_lr_grid(values.get("lr_grid")),
        probe_layer=_probe_layer(values.get("probe_layer", "last")),
        monitor=_choice(values.get("monitor", "auto"), MONITORS, "monitor"),
        select=_select(values.get("select", "auto")),
        cv_folds=_cv_folds(values.get("cv_folds", DEFAULT_CV_FOLDS)),
        **probe,
    )
    _check_selection(stage, data)
    return stage


def check_split_seeds(data: DataConfig, stage: DownstreamSettings) -> None:
    """data.split_seeds runs several label splits on one encoder's cached features; a protocol that trains a
    network per split (fine-tuning, the SGD head) gets one cell per split seed instead."""
    if data.split_seeds is not None and not is_frozen(stage.protocol, stage.solver):
        raise UserError(f"data.split_seeds is for the frozen probes (downstream=linear with solver=lbfgs, "
                        f"downstream=knn), not downstream={stage.protocol} solver={stage.solver}: sweep "
                        "data.split_seed=0,1,... instead (one cell per split)")


def _choice(value: Any, valid: tuple[str, ...], key: str) -> str:
    if value not in valid:
        raise UserError(f"downstream.{key}={value!r} unknown; valid: {', '.join(valid)}")
    return str(value)


def _select(value: Any) -> str:
    """downstream.select by its canonical name (`best` is read as `val`); `auto` is resolved per label split."""
    return _choice(SELECT_ALIASES.get(value, value) if isinstance(value, str) else value, SELECTS, "select")


def _cv_folds(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise UserError(f"downstream.cv_folds={value} must be a whole number >= 2 (folds of the labelled set)")
    return value


def _check_selection(stage: DownstreamSettings, data: DataConfig) -> None:
    """Without validation images nothing can be chosen on validation: refuse before anything trains instead of
    testing the last epoch as if it had been chosen, unless `downstream.select=last` says so explicitly."""
    if float(data.val_split) > 0 and float(stage.limit_val_batches) > 0:
        return
    why = "data.val_split=0" if not float(data.val_split) > 0 else "downstream.limit_val_batches=0"
    message = no_validation_message(why, stage.select, len(stage.lr_grid or ()) > 1 or stage.probe_layer == "best")
    if message and is_frozen(stage.protocol, stage.solver):
        message += "; or choose by cross-validation of the labelled images with downstream.select=cv"
    if message:
        raise UserError(message)


def _patience(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"downstream.patience={value} must be a whole number of validation checks >= 1 "
                        "(or null: no early stop)")
    return value


def _lr_grid(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    grid = tuple(float(v) for v in (value if isinstance(value, list | tuple) else [value]))
    if not grid or any(not lr > 0 for lr in grid):
        raise UserError(f"downstream.lr_grid={list(grid)} must be a non-empty list of positive learning rates, "
                        "e.g. downstream.lr_grid=[0.1,0.03,0.01]")
    return grid


def _probe_layer(value: Any) -> str | int:
    if value in ("last", "best"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise UserError(f"downstream.probe_layer={value!r} must be last, best or a block number >= 1")


def from_config(cfg: DictConfig) -> RunSettings:
    """Validate the composed config and turn it into typed settings; UserError on any bad value."""
    try:
        check_values(OmegaConf.to_container(cfg, resolve=True))  # every number in its range, in one line
        return _from_config(cfg)
    except (ValueError, TypeError, KeyError) as error:
        raise UserError(f"invalid configuration value ({type(error).__name__}: {error}); fix the override") from error


def _from_config(cfg: DictConfig) -> RunSettings:
    experiment = cfg.get("experiment")
    if experiment is None:
        raise UserError(
            f"no experiment chosen; add +experiment=<name> with one of: {', '.join(registry.experiments())} "
            "(e.g. python -m ssl_lightning +experiment=simclr data.fraction=0.25)"
        )
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    method, params = None, None
    if experiment not in registry.NO_PRETEXT_STAGE | {registry.RAW_PIXELS}:
        spec = registry.get(experiment)  # UserError listing the registered experiments
        method, params = spec.name, spec.parse(resolved.get(spec.section))
    data_values = dict(resolved["data"])
    data_values.setdefault("image_cache", str(Path(resolved["paths"]["cache"]).expanduser().resolve() / "images"))
    data = DataConfig.from_mapping(data_values)
    backbone = _pick(BackboneConfig, dict(resolved["backbone"]), "backbone")
    check_backbone(experiment, backbone)
    for stage in ("pretext", "downstream"):
        if int(resolved[stage].get("epochs", 1)) < 1:
            raise UserError(f"{stage}.epochs={resolved[stage]['epochs']} must be at least 1")
    downstream = _downstream(resolved["downstream"], data)
    if experiment == registry.RAW_PIXELS:
        check_raw_pixels(downstream.protocol, downstream.solver, downstream.probe_layer)
    refuse_finetuning(experiment, method, downstream.protocol)  # here, so a sweep is refused before any cell trains
    check_fixmatch(experiment, downstream.protocol, resolved)  # fine-tuning only, and its `fixmatch:` section
    check_split_seeds(data, downstream)
    return RunSettings(
        experiment=experiment, method=method, seed=int(resolved["seed"]), data=data, backbone=backbone,
        pretext=_pretext(resolved["pretext"], params),
        downstream=downstream,
        trainer=_pick(TrainerSettings, dict(resolved["trainer"]), "trainer"),
        cache_dir=Path(resolved["paths"]["cache"]).expanduser().resolve(), config=resolved,
        pretext_data=dict(resolved.get("pretext_data") or {}),
    )
