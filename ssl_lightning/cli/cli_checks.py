"""Checks of the command line made before Hydra composes anything, so that a misspelt config group option
gets our one-line error (exit code 2) listing the valid names instead of Hydra's multi-line report."""

from __future__ import annotations

import re
from pathlib import Path

from ssl_lightning.errors import UserError

_GROUP_OVERRIDE = re.compile(r"^\+?(?P<group>[a-z_]+)=(?P<value>[^()\[\]{}]*)$")
_LIST_OVERRIDE = re.compile(r"^\+?(?P<group>[a-z_]+)=\[(?P<value>[^()\[\]{}]*)\]$")


def group_options(config_dir: Path) -> dict[str, list[str]]:
    """Config group name -> the option names found in conf/<group>/*.yaml."""
    return {
        folder.name: sorted(path.stem for path in folder.glob("*.yaml"))
        for folder in config_dir.iterdir()
        if folder.is_dir() and folder.name != "hydra"
    }


def check_group_choices(argv: list[str], config_dir: Path) -> None:
    """Raise UserError for `group=name` (also `a,b` sweeps and `[a,b]` lists) naming no config file."""
    groups = group_options(config_dir)
    for arg in argv:
        match = _GROUP_OVERRIDE.match(arg) or _LIST_OVERRIDE.match(arg)
        if not match or match["group"] not in groups:
            continue
        group = match["group"]
        for value in filter(None, (v.strip() for v in match["value"].split(","))):
            if value not in groups[group] and value != "null":
                plus = "+" if group == "experiment" else ""
                raise UserError(f"unknown {group} {value!r}; valid: {', '.join(groups[group])} ({plus}{group}=<name>)")


_VALUE_OVERRIDE = re.compile(r"^(?P<section>[a-z_]+)\.(?P<key>[A-Za-z_][\w.]*)=(?P<value>.*)$")


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
    chosen: list[str] = []
    for arg in argv:
        match = _GROUP_OVERRIDE.match(arg)
        if match and match["group"] == "experiment":
            chosen = [v.strip() for v in match["value"].split(",") if v.strip()]
    every_section = set().union(*sections.values()) if sections else set()
    if not chosen:
        return argv
    routed = []
    for arg in argv:
        match = _VALUE_OVERRIDE.match(arg)
        if not match or match["section"] not in every_section:
            routed.append(arg)
            continue
        users = [name for name in chosen if match["section"] in sections.get(name, set())]
        if not users:
            owners = sorted(name for name, held in sections.items() if match["section"] in held)
            raise UserError(f"{match['section']}.{match['key']} is a hyper-parameter of +experiment="
                            f"{','.join(owners)}, not of {','.join(chosen)}; drop it or choose that experiment")
        routed.append(f"++{arg}")
    return routed
