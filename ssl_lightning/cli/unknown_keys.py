"""A misspelt or unknown config key on the command line, caught before Hydra runs anything.

Hydra answers `trainer.limit_train_batches=2` (the key lives under pretext/downstream) with a five-line
"Key ... is not in struct" report and exit code 1. Here the config is composed with the command line's group
choices (Hydra's compose API, nothing written), every `key=value` override is looked up in it, and an unknown
key becomes one line naming the closest valid keys (difflib), exit code 2 via UserError.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ssl_lightning.errors import UserError


def _dotted_keys(values: Any, prefix: str = "") -> Iterator[str]:
    """Every value key (not the sections) of a plain config dict, dotted."""
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from _dotted_keys(value, dotted)
        else:
            yield dotted


def _has_key(values: Any, dotted: str) -> bool:
    node = values
    for part in dotted.split("."):
        if isinstance(node, list):
            return True  # list items by index: Hydra checks the index itself
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _compose(config_dir: Path, overrides: list[str]) -> dict[str, Any] | None:
    """The job config (unresolved, as plain containers) for these overrides; None if Hydra cannot compose it
    (Hydra then reports the problem itself when the run starts)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    try:
        absolute = str(Path(config_dir).resolve())  # Hydra requires an absolute folder
        with initialize_config_dir(config_dir=absolute, version_base="1.3", job_name="ssl_lightning"):
            config = compose(config_name="config", overrides=overrides)
        container = OmegaConf.to_container(config, resolve=False)
    except Exception:
        return None
    return container if isinstance(container, dict) else None


def _message(key: str, configs: list[dict[str, Any]]) -> str:
    """The closest valid keys over every composed variant; else the keys of the section; else the sections."""
    known = list(dict.fromkeys(k for config in configs for k in _dotted_keys(config)))
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.8)
    if close:
        return f"unknown config key {key!r}; did you mean {' or '.join(close)}?"
    section = key.rpartition(".")[0]
    for config in configs:
        node: Any = config
        for part in section.split(".") if section else []:
            node = node.get(part) if isinstance(node, dict) else None
        if section and isinstance(node, dict):
            return f"unknown config key {key!r}; valid keys under {section}: {', '.join(map(str, node))}"
    sections = dict.fromkeys(str(name) for config in configs for name in config)
    return f"unknown config key {key!r}; valid top-level keys: {', '.join(sections)}"


def check_known_keys(argv: list[str], config_dir: Path, groups: set[str]) -> None:
    """Raise UserError for a `key=value` override (no `+`) whose key the composed config does not have."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType

    try:
        overrides = OverridesParser.create().parse_overrides([a for a in argv if not a.startswith("-")])
    except Exception:
        return  # a syntax error: Hydra's own message names it

    def is_group(name: str) -> bool:
        return name in groups or "/" in name

    def hydra_own(name: str) -> bool:
        return name == "hydra" or name.startswith(("hydra.", "hydra/"))

    to_check = [o.key_or_group for o in overrides if o.type == OverrideType.CHANGE and o.package is None
                and not is_group(o.key_or_group) and not hydra_own(o.key_or_group)]
    if not to_check:
        return
    base: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []  # group choices of a sweep: every value is composed
    for override in overrides:
        name = override.key_or_group
        if hydra_own(name) or not (is_group(name) or override.type != OverrideType.CHANGE):
            continue
        if not override.is_sweep_override():
            base.append(override.input_line)
        elif is_group(name):
            key = override.get_key_element()  # e.g. `+experiment`, as Hydra's basic sweeper spells a cell
            values = list(override.sweep_string_iterator())
            sweeps.append((key, values))
            base.append(f"{key}={values[0]}")
    config = _compose(config_dir, base)
    if config is None:
        return
    configs = [config]
    missing = [key for key in to_check if not _has_key(config, key)]
    for prefix_name, values in sweeps:  # a key may exist only for another choice of a swept group
        for value in values[1:]:
            if not missing:
                break
            variant = [line for line in base if not line.startswith(f"{prefix_name}=")] + [f"{prefix_name}={value}"]
            other = _compose(config_dir, variant)
            if other is None:
                return  # Hydra reports this choice's problem itself
            configs.append(other)
            missing = [key for key in missing if not _has_key(other, key)]
    if missing:
        raise UserError(_message(missing[0], configs))
