"""One home per config key: a typed settings field carries its default, valid range, help text and cache stage.

`temperature: float = setting(0.5, ">0", "NT-Xent temperature", stage="pretext")` is all a key needs: the range
checks (config/validation.py), the cache-key table (config/identity.py), the composed config's defaults
(config/schema.py) and docs/configuration.md (config/key_table.py) are generated from it, so a default or a range
is written once and renaming a key cannot change how it is checked.

A range is a short string read by `rule()`: `>0`, `>=1`, `[0, 1]`, `(0, 1]`, `[0, 1)`, `a|b|c` (choices: documented
here, checked where they are read, e.g. `best` is an alias of `val`) or `""` (anything). Integer fields take whole
numbers only; `X | None` fields take null too. A range no string says (a list of increasing shares, ...) is a
`Valid(check, words)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

PRETEXT, DOWNSTREAM, BOTH, NEITHER = "pretext", "downstream", "both", "neither"
SECTION = "section"  # the stage of the section the field sits in (the optimiser under pretext: or downstream:)
STAGES = (PRETEXT, DOWNSTREAM, BOTH, NEITHER, SECTION)


@dataclass(frozen=True)
class Valid:
    """A range no short string says: the check and its words for the one-line message."""

    check: Callable[[Any], bool]
    words: str


@dataclass(frozen=True)
class Setting:
    """A key's metadata: its range, what it does, which stored result it changes (or why none)."""

    valid: str | Valid
    help: str
    stage: str
    why_not: str = ""  # stage="neither": why the key changes no stored result


def setting(default: Any, valid: str | Valid, help: str, stage: str, why_not: str = "") -> Any:
    """A dataclass field with its metadata (mutable defaults become a factory)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}")
    if stage == NEITHER and not why_not:
        raise ValueError("a key that changes no stored result says why (why_not=...)")
    metadata = {"setting": Setting(valid, help, stage, why_not)}
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def nested(factory: Callable[[], Any], help: str) -> Any:
    """A field holding another settings dataclass (its keys sit beside this one's in the config section)."""
    return field(default_factory=factory, metadata={"nested": help})


def own_section(help: str) -> Any:
    """A field read from another config section (a method's `simclr:`), not a key of this one."""
    return field(default=None, metadata={"own_section": help})


def meta(f: Field) -> Setting | None:
    return f.metadata.get("setting")


def default_of(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def keys(cls: type) -> dict[str, Field]:
    """{name: field} of a settings dataclass's config keys, the nested dataclasses' keys included."""
    found: dict[str, Field] = {}
    for f in fields(cls):
        if "nested" in f.metadata:
            found.update(keys(type(f.default_factory())))  # type: ignore[misc]
        elif "own_section" not in f.metadata:
            found[f.name] = f
    return found


# ------------------------------------------------------------------ ranges


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


_BOUND = re.compile(r"^(>=|>)\s*(-?[\d.e+-]+)$")
_INTERVAL = re.compile(r"^([\[(])\s*(-?[\d.e+-]+)\s*,\s*(-?[\d.e+-]+)\s*([\])])$")


def _in_range(text: str) -> Callable[[float], bool]:
    bound = _BOUND.match(text)
    if bound:
        low = float(bound[2])
        return (lambda v: v >= low) if bound[1] == ">=" else (lambda v: v > low)
    interval = _INTERVAL.match(text)
    if not interval:
        raise ValueError(f"cannot read the range {text!r}")
    low, high = float(interval[2]), float(interval[3])
    low_ok = (lambda v: v >= low) if interval[1] == "[" else (lambda v: v > low)
    high_ok = (lambda v: v <= high) if interval[4] == "]" else (lambda v: v < high)
    return lambda v: low_ok(v) and high_ok(v)


def _words(text: str, whole: bool) -> str:
    kind = "a whole number" if whole else "a number"
    bound = _BOUND.match(text)
    return f"{kind} {bound[1]} {bound[2]}" if bound else f"{kind} in {text}"


@dataclass(frozen=True)
class Rule:
    """What `valid` means for one field: the check, the words for the message, whether null is allowed."""

    check: Callable[[Any], bool]
    valid: str
    optional: bool = False


def is_optional(f: Field) -> bool:
    return "None" in str(f.type)


def rule(f: Field) -> Rule | None:
    """The check of a field's values from its metadata and its type; None where anything goes."""
    info = meta(f)
    if info is None or info.valid == "":
        return None
    optional = is_optional(f)
    null = " or null" if optional else ""
    if isinstance(info.valid, Valid):
        words = info.valid.words
        return Rule(info.valid.check, words if "null" in words else words + null, optional)
    text = info.valid
    if "|" in text:  # choices: documented here, checked where they are read (aliases, a message naming the option)
        return None
    whole = str(f.type).startswith("int")
    inside = _in_range(text)
    parse = integer if whole else number

    def check(value: Any) -> bool:
        parsed = parse(value)
        return parsed is not None and inside(parsed)
    return Rule(check, _words(text, whole) + null, optional)


# ------------------------------------------------------------------ ranges no short string says

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range


def _seed(value: Any) -> bool:
    whole = integer(value)
    return whole is not None and 0 <= whole <= MAX_SEED


def _seeds(value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(_seed(item) for item in value)


def _batch_limit(value: Any) -> bool:
    parsed = number(value)
    return parsed is not None and (0 < parsed <= 1 or (parsed >= 1 and parsed.is_integer()))


def _shares(value: Any) -> bool:
    if not isinstance(value, list | tuple):
        return False
    parsed = [number(v) for v in value]
    return all(n is not None and 0 < n < 1 for n in parsed) and parsed == sorted(parsed)  # type: ignore[type-var]


def _positive_list(value: Any) -> bool:
    items = value if isinstance(value, list | tuple) else [value]
    return bool(items) and all((number(item) or 0) > 0 for item in items)


SEED = Valid(_seed, f"a whole number in [0, {MAX_SEED}]")
SEEDS = Valid(_seeds, f"a non-empty list of whole numbers in [0, {MAX_SEED}] (as data.split_seed), e.g. [0,1,2], "
                      "or null")
BATCH_LIMIT = Valid(_batch_limit, "a share of the batches in (0, 1] or a whole number of batches >= 1")
SHARES_OF_RUN = Valid(_shares, "a list of increasing shares of the run in (0, 1), e.g. [0.3,0.6]")
POSITIVE_LIST = Valid(_positive_list, "a non-empty list of numbers > 0, e.g. [0.1,0.03,0.01], or null")


def field_problems(settings: Any, where: str) -> list[str]:
    """One phrase per field of a settings object outside its declared range (the same words as the config check),
    so settings built in code are held to the ranges the command line is."""
    found = []
    for f in fields(settings):
        checked = rule(f)
        value = getattr(settings, f.name)
        if checked is None or (value is None and checked.optional) or checked.check(value):
            continue
        found.append(f"{where}.{f.name}={'null' if value is None else value} is invalid: use {checked.valid}")
    return found
