"""Every value checked in one place before anything is trained, by the range its settings field declares.

A key's range lives on its dataclass field (`schema_fields.setting(default, range, help, stage)`): the method's
own field says `barlow_twins.lambd` > 0 and `dino.teacher_temperature_warmup` in [0, 1], and renaming a key moves
its check with it. Keys no dataclass declares have no range here (a method's unknown key is refused by its typed
parameters). Every broken value is reported in one line (`UserError`, exit code 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ssl_lightning.config.dotted import lookup
from ssl_lightning.config.schema import field_of
from ssl_lightning.errors import UserError
from ssl_lightning.schema_fields import MAX_SEED, Rule, rule

__all__ = ["MAX_SEED", "check_booleans", "check_values", "leaves", "problems", "rule_for"]


def leaves(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every value that is not a section; lists are values."""
    if isinstance(values, dict):
        for key, value in values.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, values


def rule_for(key: str) -> Rule | None:
    """The range check of a dotted key, from its schema field; None for keys without a range."""
    found = field_of(key)
    return None if found is None else rule(found)


def problems(config: dict[str, Any]) -> list[str]:
    """One phrase per value that breaks its rule, in config order."""
    found = []
    for key, value in leaves(config):
        checked = rule_for(key)
        if checked is None or (value is None and checked.optional) or checked.check(value):
            continue
        shown = "null" if value is None else value
        found.append(f"{key}={shown} is invalid: use {checked.valid}")
    return found


def check_values(config: dict[str, Any]) -> None:
    """Raise one UserError naming every value out of its valid range (the resolved config as plain dicts)."""
    found = problems(config)
    if found:
        raise UserError("; ".join(found))


TAKES_A_LIST = {"trainer.devices"}  # one value by default, a list of GPU indices allowed (checked by trainer_checks)


def check_booleans(config: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Strict types for keys whose shipped default says what they are, whatever section they live in.

    A key whose default is true/false takes only true or false (Hydra reads `no`, `maybe` or `1` as a string or
    number, which Python would treat as true); a key whose default is one value takes no list (`[abc]`). Keys
    with their own range (e.g. trainer.channels_last: true, false or auto) are left to that rule.
    """
    for key, value in leaves(config):
        known, default = lookup(defaults, key)
        if not known or rule_for(key) is not None and not isinstance(value, list | dict):
            continue
        if isinstance(default, bool) and not isinstance(value, bool) and rule_for(key) is None:
            raise UserError(f"{key}={value} is invalid: use true or false")
        if key in TAKES_A_LIST:
            continue
        if default is not None and not isinstance(default, list | dict) and isinstance(value, list | dict):
            raise UserError(f"{key}={value} is a list, but {key} takes one value (default {default}); "
                            f"give one value, or sweep with -m {key}=a,b")
