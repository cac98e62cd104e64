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
from ssl_lightning.probes.config import KNN, ProbeSettings, check_raw_pixels, frozen_probe_fields, is_frozen
from ssl_lightning.schema_fields import (
    BATCH_LIMIT,
    BOTH,
    DOWNSTREAM,
    NEITHER,
    POSITIVE_LIST,
    PRETEXT,
    Valid,
    default_of,
    integer,
    keys,
    nested,
    own_section,
    setting,
)

HEADS = ("linear", "mlp")
RUNTIME = "how fast or how verbose, not what is computed"


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
    """The `pretext:` section: the encoder's training (the method's own keys: its section, e.g. `simclr:`)."""

    epochs: int = setting(4, ">=1", "pretext epochs (profile presets: smoke 1, cpu 4, paper 200)", PRETEXT)
    batch_size: int = setting(256, ">=1", "images per step (rotation turns each into 4 samples, SimCLR into 2 "
                              "views)", PRETEXT)
    optim: OptimConfig = nested(OptimConfig, "the optimiser keys")
    reuse: bool = setting(True, "", "false: retrain even when the store has this encoder", NEITHER,
                          "whether a stored encoder may be used, not which one")
    limit_train_batches: float = setting(1.0, BATCH_LIMIT, "Lightning's limit_train_batches", PRETEXT)
    limit_val_batches: float = setting(1.0, BATCH_LIMIT, "Lightning's limit_val_batches", PRETEXT)
    params: MethodParams | None = own_section("the chosen method's typed hyper-parameters (its section)")


@dataclass(frozen=True)
class DownstreamSettings(ProbeSettings):
    """The `downstream:` section (conf/downstream/<protocol>.yaml presets; the frozen probes' keys: ProbeSettings)."""

    protocol: str = setting("finetune", "finetune|linear|knn", "what is trained on the labelled images (downstream="
                            "<protocol> sets it)", DOWNSTREAM)
    head: str = setting("linear", "|".join(HEADS), "the classification head", DOWNSTREAM)
    epochs: int = setting(16, ">=1", "the maximum: early stopping ends a run whose validation metric stopped rising "
                          "(profile presets: smoke 1, paper 100)", DOWNSTREAM)
    batch_size: int = setting(128, ">=1", "labelled images per step", DOWNSTREAM)
    optim: OptimConfig = nested(OptimConfig, "the optimiser keys")
    augment: bool = setting(True, "", "random shift + horizontal flip on the labelled images", DOWNSTREAM)
    limit_train_batches: float = setting(1.0, BATCH_LIMIT, "Lightning's limit_train_batches", DOWNSTREAM)
    limit_val_batches: float = setting(1.0, BATCH_LIMIT, "Lightning's limit_val_batches", DOWNSTREAM)
    patience: int | None = setting(5, ">=1", "validation checks (not epochs) without a better metric before "
                                   "stopping (null = never stop early)", DOWNSTREAM)
    min_steps: int = setting(DEFAULT_MIN_STEPS, ">=0", "optimiser steps at least: few labels train longer, "
                             "validated `epochs` times evenly (0: no floor)", DOWNSTREAM)
    lr_grid: tuple[float, ...] | None = setting(None, POSITIVE_LIST, "e.g. [0.1,0.03,0.01]: every arm picks its lr "
                                                "on validation from the same grid", DOWNSTREAM)
    probe_layer: str | int = setting("last", "", "encoder block whose pooled features feed the head: last | best | "
                                     "1..N", DOWNSTREAM)
    monitor: str = setting("auto", "|".join(MONITORS), "validation metric for checkpoint, early stop and choices "
                           "(auto: balanced_acc when class sizes differ by more than 1.5x)", DOWNSTREAM)
    select: str = setting("auto", "|".join(SELECTS), "how lr, C, k, layer and stopping step are chosen: val (alias "
                          "best) | cv (cross-validation of the labelled set, then a refit) | auto | last", DOWNSTREAM)
    cv_folds: int = setting(DEFAULT_CV_FOLDS, ">=2", "folds under select=cv (fewer when the smallest labelled class "
                            "has fewer images or groups)", DOWNSTREAM)


@dataclass(frozen=True)
class TrainerSettings:
    """The `trainer:` section (conf/trainer/<name>.yaml presets)."""

    accelerator: str = setting("cpu", "", "Lightning accelerator: cpu | gpu | auto", NEITHER,
                               "the same computation on another device (precision and processes are keyed)")
    devices: Any = setting(1, "", "processes per node, or a list of GPU indices", BOTH)
    num_nodes: int = setting(1, ">=1", "nodes", BOTH)
    strategy: str = setting("auto", "", "Lightning strategy (ddp for several processes)", NEITHER,
                            "how the processes talk (their number is keyed)")
    precision: str = setting("32-true", "", "Lightning precision, e.g. bf16-mixed", BOTH)
    sync_batchnorm: bool = setting(False, "", "BatchNorm statistics over all processes", BOTH)
    channels_last: bool | str = setting("auto", Valid(lambda v: v is True or v is False or v == "auto",
                                                      "true, false or auto"),
                                        "memory layout (auto: on for grey images <= 32 px and on GPUs)", NEITHER,
                                        "a memory layout of the same numbers")
    compile: bool = setting(False, "", "torch.compile (pays after ~10^2-10^3 steps per process)", NEITHER, RUNTIME)
    benchmark: bool = setting(False, "", "cudnn benchmark", NEITHER, RUNTIME)
    deterministic: bool = setting(False, "", "deterministic algorithms", NEITHER, RUNTIME)
    enable_progress_bar: bool = setting(True, "", "Lightning's progress bar", NEITHER, RUNTIME)
    log_every_n_steps: int = setting(10, ">=1", "logging interval", NEITHER, RUNTIME)
    threads: str | int = setting("auto", Valid(lambda v: v == "auto" or (integer(v) or 0) >= 1,
                                               "auto or a whole number >= 1"),
                                 "torch CPU threads: auto (the cores idle at each stage start) or N", NEITHER, RUNTIME)


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


def _with_defaults(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """A section's values over its schema defaults: a key a protocol's section leaves out (k-NN trains nothing, so
    conf/downstream/knn.yaml has no optimiser keys) takes the dataclass default, the one default of every key."""
    return {**{name: default_of(f) for name, f in keys(cls).items()}, **values}


def _pretext(given: dict[str, Any], params: MethodParams | None) -> PretextSettings:
    values = _with_defaults(PretextSettings, given)
    return PretextSettings(
        epochs=int(values["epochs"]), batch_size=int(values["batch_size"]),
        optim=_optim(given, "pretext", PRETEXT_KEYS),
        reuse=bool(values["reuse"]), limit_train_batches=values["limit_train_batches"],
        limit_val_batches=values["limit_val_batches"],
        params=params,
    )


def _downstream(given: dict[str, Any], data: DataConfig) -> DownstreamSettings:
    values = _with_defaults(DownstreamSettings, given)
    protocol, head = values["protocol"], values["head"]
    if protocol not in (*PROTOCOLS, KNN):
        raise UserError(f"unknown protocol {protocol!r}; valid: {', '.join((*PROTOCOLS, KNN))} (downstream=<name>)")
    if head not in HEADS:
        raise UserError(f"downstream.head={head!r} unknown; valid: {', '.join(HEADS)}")
    probe = frozen_probe_fields(given, protocol, head)
    stage = DownstreamSettings(
        protocol=protocol, head=head, epochs=int(values["epochs"]),
        batch_size=int(values["batch_size"]),
        optim=_optim(given, "downstream", {f.name for f in fields(DownstreamSettings)} - {"optim"}),
        augment=bool(values["augment"]),
        limit_train_batches=values["limit_train_batches"],
        limit_val_batches=values["limit_val_batches"],
        patience=_patience(values["patience"]), min_steps=int(values["min_steps"]),
        lr_grid=_lr_grid(values["lr_grid"]),
        probe_layer=_probe_layer(values["probe_layer"]),
        monitor=_choice(values["monitor"], MONITORS, "monitor"),
        select=_select(values["select"]),
        cv_folds=_cv_folds(values["cv_folds"]),
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
        epochs = resolved[stage].get("epochs")
        if epochs is not None and int(epochs) < 1:
            raise UserError(f"{stage}.epochs={epochs} must be at least 1")
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
