"""Every numeric setting checked in one place before anything is trained, from a table of rules.

A rule pairs a pattern over the dotted key (`fnmatch` style, e.g. `simclr.temperature`, `*.batch_size`,
`*temperature*`) with a check and the valid range in words. The first rule whose pattern matches a key decides,
so exact keys come first and generic name rules last: a new method's section (`byol.momentum`,
`dino.teacher_temperature`, `barlow.proj_dim`, ...) is covered without a new row, and a row added to `RULES` covers
anything else. Every broken value is reported in one line (`UserError`, exit code 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ssl_lightning.config.dotted import lookup
from ssl_lightning.data.config import MAX_SEED
from ssl_lightning.errors import UserError


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def int_at_least(low: int, high: int | None = None) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        number = _integer(value)
        return number is not None and number >= low and (high is None or number <= high)
    return check


def number_in(low: float | None = None, high: float | None = None, low_open: bool = False,
              high_open: bool = False) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        number = _number(value)
        if number is None:
            return False
        if low is not None and (number <= low if low_open else number < low):
            return False
        return not (high is not None and (number >= high if high_open else number > high))
    return check


def seed_list(value: Any) -> bool:
    """data.split_seeds: a non-empty list of seeds, each in data.split_seed's range."""
    return (isinstance(value, list | tuple) and bool(value)
            and all(int_at_least(0, MAX_SEED)(item) for item in value))


def batch_limit(value: Any) -> bool:
    """Lightning's limit_*_batches: a share of the batches in (0, 1] or a whole number of batches >= 1."""
    number = _number(value)
    if number is None:
        return False
    return 0 < number <= 1 or (number >= 1 and float(number).is_integer())


def fractions_of_run(value: Any) -> bool:
    """step_milestones: increasing shares of the run, each in (0, 1)."""
    if not isinstance(value, list | tuple):
        return False
    numbers = [_number(v) for v in value]
    return all(n is not None and 0 < n < 1 for n in numbers) and numbers == sorted(numbers)


def number_list(value: Any) -> bool:
    """Grids such as downstream.lr_grid: positive numbers (one number is a grid of one)."""
    items = value if isinstance(value, list | tuple) else [value]
    return bool(items) and all(number_in(0, low_open=True)(item) for item in items)


@dataclass(frozen=True)
class Rule:
    pattern: str  # fnmatch pattern over the dotted key
    check: Callable[[Any], bool]
    valid: str  # the valid range, in words, for the message
    optional: bool = False  # null allowed (means "not set")


POSITIVE_INT = "a whole number >= 1"
UNIT = "a number in [0, 1]"

# First match wins: exact keys, then keys by section, then generic names anywhere in the config.
RULES: tuple[Rule, ...] = (
    Rule("seed", int_at_least(0, MAX_SEED), f"a whole number in [0, {MAX_SEED}]"),
    Rule("data.fraction", number_in(0, 1, low_open=True), "a number in (0, 1], e.g. 0.25"),
    Rule("data.val_split", number_in(0, 1, high_open=True), "a number in [0, 1), e.g. 0.1"),
    Rule("data.test_split", number_in(0, 1, low_open=True, high_open=True), "a number in (0, 1), e.g. 0.2"),
    Rule("data.image_size", int_at_least(8), "a whole number >= 8 (pixels) or null", optional=True),
    Rule("data.split_seeds", seed_list, f"a non-empty list of whole numbers in [0, {MAX_SEED}] (as data.split_seed), "
         "e.g. [0,1,2], or null", optional=True),
    Rule("data.hed_jitter", number_in(0, 1, high_open=True), "a number in [0, 1): 0 (off), 0.05 (light) or 0.2 "
         "(strong)"),
    Rule("data.val_per_label", number_in(0, low_open=True), "a number > 0, e.g. 0.2, or null (the whole pool)",
         optional=True),
    Rule("data.eval_batch_pixels", int_at_least(1), "a whole number of pixels >= 1 or null (no cap)", optional=True),
    Rule("data.decode_workers", int_at_least(1), "a whole number >= 1 or null (all cores)", optional=True),
    Rule("data.num_classes", int_at_least(2), "a whole number >= 2"),
    Rule("data.channels", lambda v: _integer(v) in (1, 3), "1 or 3"),
    Rule("*max_image_pixels", int_at_least(1), "a whole number of pixels >= 1 or null (Pillow's limit)",
         optional=True),
    Rule("*.train_size", int_at_least(1), POSITIVE_INT),
    Rule("*.test_size", int_at_least(1), POSITIVE_INT),
    Rule("trainer.channels_last", lambda v: v is True or v is False or v == "auto", "true, false or auto"),
    Rule("trainer.log_every_n_steps", int_at_least(1), POSITIVE_INT),
    Rule("trainer.num_nodes", int_at_least(1), POSITIVE_INT),
    Rule("trainer.threads", lambda v: v == "auto" or int_at_least(1)(v), "auto or a whole number >= 1"),
    Rule("backbone.width", int_at_least(1), POSITIVE_INT),
    Rule("fixmatch.threshold", number_in(0, 1), "a number in [0, 1], e.g. 0.95"),  # fixmatch.lambda_u: *lambd*
    Rule("fixmatch.mu", int_at_least(1), "a whole number >= 1 (unlabelled images per labelled one)"),
    Rule("backbone.blocks", int_at_least(1), POSITIVE_INT),
    Rule("backbone.stem_stride", int_at_least(1), POSITIVE_INT),
    Rule("*.step_milestones", fractions_of_run, "a list of increasing shares of the run in (0, 1), e.g. [0.3,0.6]"),
    Rule("*.step_gamma", number_in(0, 1, low_open=True), "a number in (0, 1]"),
    Rule("*.limit_*_batches", batch_limit, "a share of the batches in (0, 1] or a whole number of batches >= 1"),
    # generic names: any section, today's and new methods'
    Rule("*seed", int_at_least(0, MAX_SEED), f"a whole number in [0, {MAX_SEED}]"),
    Rule("*batch_size", int_at_least(1), POSITIVE_INT),
    Rule("*queue_size", int_at_least(1), POSITIVE_INT),
    Rule("*image_size", int_at_least(8), "a whole number >= 8 (pixels) or null", optional=True),
    Rule("*.epochs", int_at_least(1), POSITIVE_INT),
    Rule("*.min_steps", int_at_least(0), "a whole number of optimiser steps >= 0 (0: no floor)"),
    Rule("*_epochs", int_at_least(0), "a whole number >= 0"),
    Rule("*patience*", int_at_least(1), "a whole number >= 1 or null (no early stop)",
         optional=True),
    Rule("*num_workers", int_at_least(0), "a whole number >= 0"),
    Rule("*warmup", number_in(0), "a number >= 0"),  # e.g. dino.teacher_temperature_warmup (0 = none)
    Rule("*crops", int_at_least(0), "a whole number >= 0"),
    Rule("*fraction", number_in(0, 1, low_open=True), "a number in (0, 1]"),
    Rule("*temperature*", number_in(0, low_open=True), "a number > 0, e.g. 0.5"),
    Rule("*_temp", number_in(0, low_open=True), "a number > 0"),
    Rule("*_grid", number_list, "a non-empty list of numbers > 0, e.g. [0.1,0.03,0.01], or null", optional=True),
    Rule("*.lr", number_in(0, low_open=True), "a number > 0, e.g. 0.1"),
    Rule("*_lr", number_in(0), "a number >= 0"),
    Rule("*weight_decay*", number_in(0), "a number >= 0, e.g. 5e-4"),
    Rule("*momentum*", number_in(0, 1), UNIT),
    Rule("*crop_min_scale", number_in(0, 1, low_open=True), "a number in (0, 1], e.g. 0.08"),
    Rule("*crop_*scale", number_in(0, 1, low_open=True), "a number in (0, 1]"),
    Rule("*_scale", number_in(0, low_open=True), "a number > 0"),
    Rule("*_p", number_in(0, 1), UNIT),
    Rule("*_p[0-9]", number_in(0, 1), UNIT),  # per-view probabilities, e.g. byol.blur_p1
    Rule("*prob", number_in(0, 1), UNIT),  # not *prob*: downstream.probe_layer is no probability
    Rule("*prob_*", number_in(0, 1), UNIT),
    Rule("*probability*", number_in(0, 1), UNIT),
    Rule("*jitter_strength", number_in(0), "a number >= 0, e.g. 0.5"),
    Rule("*_dim", int_at_least(1), POSITIVE_INT),
    Rule("*lambd*", number_in(0), "a number >= 0"),
    Rule("*scale_loss", number_in(0, low_open=True), "a number > 0"),
)


def leaves(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every value that is not a section; lists are values."""
    if isinstance(values, dict):
        for key, value in values.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, values


def rule_for(key: str) -> Rule | None:
    return next((rule for rule in RULES if fnmatchcase(key, rule.pattern)), None)


def problems(config: dict[str, Any]) -> list[str]:
    """One phrase per value that breaks its rule, in config order."""
    found = []
    for key, value in leaves(config):
        rule = rule_for(key)
        if rule is None or (value is None and rule.optional) or rule.check(value):
            continue
        shown = "null" if value is None else value
        found.append(f"{key}={shown} is invalid: use {rule.valid}")
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
    with their own rule in RULES (e.g. trainer.channels_last: true, false or auto) are left to that rule.
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
