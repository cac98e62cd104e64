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
