"""A run or a whole sweep checked before its first cell trains: every cell composed and every cheap check made.

Hydra's basic sweeper expands `-m` overrides one cell at a time, so a bad value in the third cell used to stop the
sweep after two cells had trained. Here the command line is parsed with Hydra's own override parser, expanded
into cells the way the basic sweeper does (config/sweep_cells.py), and each cell is composed with Hydra's public
Compose API (nothing written) and turned into typed settings. Then the checks that cost milliseconds and would
otherwise fail after training: strict booleans, trainer devices/precision/strategy, a writable `paths.cache`,
`downstream.probe_layer` against the backbone's stages, data roots that are files, required values left `???`,
the output folder's parents. A problem is one `UserError` line naming the cell's own overrides (exit code 2).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ssl_lightning.config.sweep_cells import expand, one_line, parse, varying
from ssl_lightning.config.trainer_checks import check_trainer
from ssl_lightning.config.validation import check_booleans, leaves
from ssl_lightning.errors import UserError

MODE_FLAGS = {"-m", "--multirun"}


def _check_repeated_groups(overrides: list[Any], groups: set[str]) -> None:
    seen: dict[str, str] = {}
    for override in overrides:
        name = override.key_or_group
        if name in groups and override.package is None and override.is_add():  # a plain group=x twice: last wins
            if name in seen:
                raise UserError(f"{name} is given twice ({seen[name]} and {override.input_line}); give it once, "
                                f"or sweep with -m {'+' if name == 'experiment' else ''}{name}=a,b")
            seen[name] = override.input_line


def _is_group(name: str, groups: set[str]) -> bool:
    return name in groups or "/" in name


def _group_choices(cell: list[str], groups: set[str]) -> tuple[str, ...]:
    """The cell's overrides that choose config group options (`profile=smoke`, `+experiment=simclr`)."""
    return tuple(override.input_line for override in parse(cell) if _is_group(override.key_or_group, groups))


def _existing_file_above(path: Path) -> Path | None:
    """The first existing ancestor of `path` (itself included) that is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def check_output_dir(folder: str, key: str) -> None:
    blocking = _existing_file_above(Path(folder).expanduser().absolute())
    if blocking is not None:
        raise UserError(f"{key}={folder} cannot be created: {blocking} is a file; choose another folder")


def check_cache(cache: str) -> None:
    """paths.cache must be (or become) a folder this user can write into."""
    path = Path(cache).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"paths.cache={cache} is a file, not a folder; point paths.cache at a folder")
    blocking = _existing_file_above(path)
    if blocking is not None:
        raise UserError(f"paths.cache={cache} cannot be created: {blocking} is a file; point paths.cache elsewhere")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"paths.cache={cache} is not writable ({existing} refuses writes); "
                        "point paths.cache at a folder you can write to")


def check_roots(values: dict[str, Any]) -> None:
    """Every `root` setting that names an existing file instead of a folder."""
    for key, value in leaves(values):
        if key.rpartition(".")[2] != "root" or not isinstance(value, str) or value == "???":
            continue
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            raise UserError(f"{key}={value} is a file, not a folder; point it at the folder that holds the images")


def check_missing(values: dict[str, Any]) -> None:
    """Values the config marks as required (`???`) and nobody set."""
    for key, value in leaves(values):
        if value == "???":
            raise UserError(f"{key} is required but not set; add {key}=<value> to the command line")


@lru_cache(maxsize=16)
def _stage_count(backbone: tuple[tuple[str, Any], ...]) -> int:
    import torch

    from ssl_lightning.models.backbones import BackboneConfig, build_encoder
    from ssl_lightning.models.probe import stage_count

    with torch.device("meta"):  # the module structure only: no memory, no initialisation cost
        return stage_count(build_encoder(BackboneConfig(**dict(backbone)), 3, 32))


def check_probe_layer(settings: Any) -> None:
    layer = settings.downstream.probe_layer
    if not isinstance(layer, int):
        return
    from dataclasses import asdict

    stages = _stage_count(tuple(sorted(asdict(settings.backbone).items())))
    if layer > stages:
        raise UserError(f"downstream.probe_layer={layer} is out of range: backbone {settings.backbone.name} has "
                        f"stages 1..{stages}; use a number in that range, last or best")


def _job(config: Any) -> Any:
    """A copy of the config without its Hydra node (what the run sees), struct like the composed config, so that
    a value override of a key it lacks fails as it would in Hydra."""
    from omegaconf import OmegaConf

    job = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    OmegaConf.set_struct(job, OmegaConf.is_struct(config))
    return job


def _values(job: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(job, resolve=True, throw_on_missing=False)
    assert isinstance(values, dict)
    return values


def check_cell(config: Any, job: Any, defaults: dict[str, Any], multirun: bool) -> None:
    """All cheap checks of one cell: `config` holds its Hydra node (output folder; set as HydraConfig by the caller
    for ${hydra:runtime.cwd} in paths.cache), `job` the rest, checked against the resolved values of its groups'
    defaults; UserError on the first problem."""
    from ssl_lightning.config import settings as settings_module
    from ssl_lightning.training.trainer_factory import check_accelerator

    if multirun:
        check_output_dir(str(config.hydra.sweep.dir), "hydra.sweep.dir")
    else:
        check_output_dir(str(config.hydra.run.dir), "hydra.run.dir")
    values = _values(job)
    check_missing(values)
    check_booleans(values, defaults)
    check_roots(values)
    settings = settings_module.from_config(job)
    check_accelerator(settings.trainer)
    check_trainer(settings.trainer)
    check_cache(str(values["paths"]["cache"]))
    check_probe_layer(settings)


def _compose(compose: Any, cell: list[str], hydra_node: bool = True) -> Any:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        return compose(config_name="config", overrides=cell, return_hydra_config=hydra_node)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        raise UserError(one_line(error)) from None


def cells_of(argv: list[str]) -> tuple[list[list[str]], bool] | None:
    """(cells, multirun) for a command line of overrides; None when it asks Hydra for something else (--help)."""
    flags = [arg for arg in argv if arg.startswith("-")]
    if set(flags) - MODE_FLAGS:
        return None
    args = [arg for arg in argv if not arg.startswith("-")]
    multirun = bool(flags)
    return expand(parse(args), multirun), multirun


def _apply_values(config: Any, overrides: list[Any]) -> bool:
    """Apply value overrides to a composed config with OmegaConf's public calls, the way Hydra applies them after
    building the defaults list (`key=v` merges into an existing key, `++key=v` adds or merges); False, with
    `config` to be thrown away, for anything else or anything that fails, so that Hydra composes the cell itself
    and names the problem in its own words."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    for override in overrides:
        name = override.key_or_group
        if override.package is not None or override.is_add() or override.is_delete() or name == "hydra" \
                or name.startswith(("hydra.", "hydra/")):
            return False
        try:
            OmegaConf.update(config, name, override.value(), merge=True, force_add=override.is_force_add())
        except (OmegaConfBaseException, ValueError, TypeError):
            return False
    return True


def _cell_config(compose: Any, cell: list[str], groups: set[str],
                 composed: dict[tuple[str, ...], Any]) -> tuple[Any, Any]:
    """(the config holding the cell's Hydra node, the cell's job config). Cells that choose the same config groups
    differ only in values: the first is composed in full, the others copy its job part and apply their own value
    overrides (`_apply_values`), sharing its Hydra node (a sweep has one `hydra.sweep.dir`, which Hydra resolves
    once for the whole sweep); this keeps a 100-cell sweep's check to seconds. Anything else is composed in full."""
    choices = _group_choices(cell, groups)
    if choices not in composed:
        composed[choices] = (cell, _compose(compose, cell))
        return composed[choices][1], _job(composed[choices][1])
    first_cell, first_config = composed[choices]
    job = _job(first_config)
    if len(cell) == len(first_cell) and _apply_values(job, parse([line for line in cell if line not in first_cell])):
        return first_config, job
    config = _compose(compose, cell)
    return config, _job(config)


def check_run(argv: list[str], config_dir: Path, groups: set[str]) -> int:
    """Compose and check every cell of `argv` (a run or a `-m` sweep); returns the number of cells checked."""
    found = cells_of(argv)
    if found is None:
        return 0
    _check_repeated_groups(parse([a for a in argv if not a.startswith("-")]), groups)
    cells, multirun = found
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf.errors import OmegaConfBaseException

    defaults: dict[tuple[str, ...], dict[str, Any]] = {}
    composed: dict[tuple[str, ...], Any] = {}
    hydra_node_of = None
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3",
                               job_name="ssl_lightning"):
        for number, cell in enumerate(cells, start=1):
            try:
                config, job = _cell_config(compose, cell, groups, composed)
                choices = _group_choices(cell, groups)
                try:
                    if config is not hydra_node_of:  # cells that share a Hydra node set it once
                        HydraConfig.instance().set_config(config)
                        hydra_node_of = config
                    if choices not in defaults:  # resolved once per group choice
                        defaults[choices] = _values(_compose(compose, list(choices), hydra_node=False))
                    check_cell(config, job, defaults[choices], multirun)
                except OmegaConfBaseException as error:  # e.g. an interpolation that resolves to nothing
                    raise UserError(f"cannot resolve the configuration: {one_line(error)}") from None
            except UserError as error:
                if len(cells) == 1:
                    raise
                named = " ".join(varying(cells, cell))
                raise UserError(f"sweep cell {number}/{len(cells)} ({named}): {error}; nothing was trained") from None
    return len(cells)
