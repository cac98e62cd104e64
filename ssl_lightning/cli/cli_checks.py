"""Checks of the command line made before Hydra composes anything, so that a misspelt config group option
gets our one-line error (exit code 2) listing the valid names instead of Hydra's multi-line report. The command
line is read with Hydra's own override parser (config/sweep_cells.py `parse`), never with patterns of our own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ssl_lightning.config.sweep_cells import parse
from ssl_lightning.errors import UserError

NOT_GROUPS = ("hydra", "schema")  # Hydra's own groups; conf/schema holds the generated defaults groups extend


def group_options(config_dir: Path) -> dict[str, list[str]]:
    """Config group name -> the option names found in conf/<group>/*.yaml (the groups a user chooses from)."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in config_dir.iterdir()
        if folder.is_dir() and folder.name not in NOT_GROUPS
    }


def _parsed(argv: list[str]) -> list[tuple[str, Any]]:
    """(argument, Hydra's parsed override) for every override of argv (flags such as -m left out)."""
    return [(arg, override) for arg in argv if not arg.startswith("-") for override in parse([arg])]


def _values(override: Any) -> list[str]:
    """The option names an override chooses: one, each value of a discrete sweep (`a,b`, `choice(a,b)`), or each
    item of a list (`[a,b]`, several options of one group); none for a deletion or an `interval()`."""
    if override.is_delete():
        return []
    if override.is_sweep_override():
        return list(override.sweep_string_iterator()) if override.is_discrete_sweep() else []
    value = override.value()
    if isinstance(value, list):
        return [str(item) for item in value]
    return [value if isinstance(value, str) else override.get_value_element_as_str()]  # 'quoted' without quotes


def check_group_choices(argv: list[str], config_dir: Path) -> None:
    """Raise UserError for `group=name` (also `a,b` sweeps and `[a,b]` lists) naming no config file."""
    groups = group_options(config_dir)
    for _, override in _parsed(argv):
        group = override.key_or_group
        if group not in groups:
            continue
        for value in _values(override):
            if value not in groups[group] and value != "null":
                plus = "+" if group == "experiment" else ""
                raise UserError(f"unknown {group} {value!r}; valid: {', '.join(groups[group])} ({plus}{group}=<name>)")


def method_sections(config_dir: Path) -> dict[str, set[str]]:
    """Experiment name -> the method hyper-parameter sections its file holds (e.g. simclr -> {'simclr'})."""
    from omegaconf import OmegaConf

    sections = {}
    suite = set(OmegaConf.load(config_dir / "config.yaml"))  # e.g. `pretext:`, a method's defaults for the suite
    for path in sorted((config_dir / "experiment").glob("*.yaml")):
        loaded = OmegaConf.to_container(OmegaConf.load(path))
        sections[path.stem] = {key for key, value in (loaded or {}).items()
                               if key not in {"experiment", "defaults", *suite} and isinstance(value, dict)}
    return sections


def route_method_overrides(argv: list[str], config_dir: Path) -> list[str]:
    """`simclr.temperature=0.2` lives in conf/experiment/simclr.yaml, not in every composed config: in a sweep over
    several experiments it becomes `++simclr.temperature=0.2` (added where absent, ignored by the other methods,
    which hash only their own section into the store key); unknown keys then get our one-line error from the
    method's typed parameters. A section that none of the chosen experiments uses is an error."""
    sections = method_sections(config_dir)
    parsed = _parsed(argv)
    chosen: list[str] = []
    for _, override in parsed:
        if override.key_or_group == "experiment" and override.package is None and not override.is_delete():
            chosen = [value for value in _values(override) if value != "null"]  # the last choice wins, as in Hydra
    every_section = set().union(*sections.values()) if sections else set()
    if not chosen:
        return argv
    from hydra.core.override_parser.types import OverrideType

    plain_values = {arg: override for arg, override in parsed if override.type == OverrideType.CHANGE
                    and override.package is None and "." in override.key_or_group}
    routed = []
    for arg in argv:
        override = plain_values.get(arg)
        section, _, key = override.key_or_group.partition(".") if override is not None else ("", "", "")
        if section not in every_section:
            routed.append(arg)
            continue
        users = [name for name in chosen if section in sections.get(name, set())]
        if not users:
            owners = sorted(name for name, held in sections.items() if section in held)
            raise UserError(f"{section}.{key} is a hyper-parameter of +experiment={','.join(owners)}, not of "
                            f"{','.join(chosen)}; drop it or choose that experiment")
        routed.append(f"++{arg}")
    return routed
