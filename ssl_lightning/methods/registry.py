"""The pretext method registry: every module of `ssl_lightning.methods` may register experiments.

A method module declares, with `register(MethodSpec(...))` at import time, its experiment name(s), a typed
hyper-parameter dataclass read from its own config section (`conf/experiment/<name>.yaml`) and a builder
`(encoder, optim, epochs, hparams) -> PretextMethod`. Settings, the pretext store key, the report's column
names and the benchmarks look methods up here, so adding one is one module plus one experiment file.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from ssl_lightning.errors import UserError
from ssl_lightning.schema_fields import rule

SUPERVISED = "supervised"  # the experiment without a pretext stage (not a method)
SUPERVISED_RANK = 3  # after the original study's rotation (0), rotation_jitter (1) and simclr (2)
RAW_PIXELS = "raw_pixels"  # the no-encoder floor: frozen probes on pixels (models/pixels.py), not a method
RAW_PIXELS_RANK = 1000  # after every method
FIXMATCH = "fixmatch"  # the semi-supervised arm without a pretext stage (evaluation/fixmatch.py), not a method
FIXMATCH_RANK = SUPERVISED_RANK + 1  # beside the supervised baseline it extends with the unlabelled pool
PRETRAINED = "pretrained"  # someone else's encoder as it is (backbone.init): probed, not a method
PRETRAINED_RANK = 900  # after every method, before the floor (raw pixels) and the ceiling


@dataclass(frozen=True)
class ArmSpec:
    """An experiment that is not a pretext method (no pretext stage): a baseline or a semi-supervised arm. Its
    report column and rank sit in the same table as the methods' (`display`, `experiments`)."""

    name: str  # +experiment=<name>
    display: str  # the report's column name
    rank: int  # column order among the methods' ranks


ARMS: dict[str, ArmSpec] = {arm.name: arm for arm in (
    ArmSpec(SUPERVISED, "Supervised", SUPERVISED_RANK),
    ArmSpec(FIXMATCH, "FixMatch", FIXMATCH_RANK),
    ArmSpec(PRETRAINED, "Pretrained", PRETRAINED_RANK),
    ArmSpec(RAW_PIXELS, "Raw pixels", RAW_PIXELS_RANK),
)}
# The arms with no pretext stage: a sweep's pretext keys do not touch them.
NO_PRETEXT_STAGE = frozenset(ARMS)


class MethodParams:
    """Base of the hyper-parameter dataclasses: fields declared with `setting()` (default, range, help; stage
    pretext), `validate()`, and what the store key hashes."""

    def validate(self) -> None:
        """Raise ValueError naming the field for a value outside its declared range (settings turn it into a
        UserError); a method adds the checks that relate two fields."""
        for f in fields(self):  # type: ignore[arg-type]
            found = rule(f)
            value = getattr(self, f.name)
            if found is not None and not (value is None and found.optional) and not found.check(value):
                raise ValueError(f"{f.name}={value!r} must be {found.valid}")  # the section is added by parse()

    def identity(self) -> dict[str, Any]:
        """The values that shape the encoder (hashed into the pretext store key)."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the experiment name (+experiment=<name>)
    display: str  # the report's column name
    section: str  # the config section holding the hyper-parameters, e.g. `byol`
    params: type  # a dataclass subclassing MethodParams
    build: Callable[..., Any]  # (encoder, optim, epochs, params) -> PretextMethod
    rank: int = 100  # column order in the report (the original study's methods first)
    reference: str = ""
    # Trains on the labels of the pretext pool (the supervised-features ceiling): its training batches carry them
    # (data/pool_labels.py) and, having seen every pool label, it is probed frozen only.
    needs_labels: bool = False

    def parse(self, values: dict[str, Any] | None) -> MethodParams:
        """The typed hyper-parameters from the config section; UserError for unknown names or bad values."""
        values = dict(values or {})
        types = {f.name: str(f.type) for f in fields(self.params)}
        known = set(types)
        unknown = sorted(set(values) - known)
        if unknown:
            close = sorted({f"{self.section}.{m}" for name in unknown for m in difflib.get_close_matches(name, known)})
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(f"unknown config key(s) {[f'{self.section}.{name}' for name in unknown]} for "
                            f"+experiment={self.name}; {hint}valid: {sorted(known)}")
        try:
            params = self.params(**{name: _coerce(types[name], value, name) for name, value in values.items()})
            params.validate()
        except ValueError as error:
            raise UserError(f"{self.section}.{error} (+experiment={self.name})") from error
        return params


def require(ok: bool, field: str, value: Any, rule: str) -> None:
    """One field constraint for `validate()`: ValueError("<field>=<value> <rule>") when `ok` is false."""
    if not ok:
        raise ValueError(f"{field}={value!r} {rule}")


def _coerce(kind: str, value: Any, name: str) -> Any:
    """YAML/CLI values to the declared field type (an int where a float is declared is fine, not the reverse)."""
    if kind == "bool":
        require(isinstance(value, bool), name, value, "must be true or false")
    elif kind == "int":
        require(isinstance(value, int) and not isinstance(value, bool), name, value, "must be an integer")
    elif kind == "float":
        require(isinstance(value, int | float) and not isinstance(value, bool), name, value, "must be a number")
        return float(value)
    return value


_REGISTRY: dict[str, MethodSpec] = {}
_discovered = False


def register(spec: MethodSpec) -> MethodSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise RuntimeError(f"pretext method {spec.name!r} is registered twice")
    if spec.name in NO_PRETEXT_STAGE:
        raise RuntimeError(f"{spec.name!r} is an experiment without a pretext stage, not a method name")
    _REGISTRY[spec.name] = spec
    return spec


def discover() -> None:
    """Import every module of the methods package once, so that each registers its experiments."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module("ssl_lightning.methods")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _discovered = True


def methods() -> dict[str, MethodSpec]:
    """Registered pretext experiments in report order."""
    discover()
    return dict(sorted(_REGISTRY.items(), key=lambda item: (item[1].rank, item[0])))


def experiments() -> list[str]:
    """Every valid `+experiment=` name in report order: the registered methods and the arms (ARMS)."""
    ranked = [(spec.rank, name) for name, spec in methods().items()] + [(arm.rank, name) for name, arm in ARMS.items()]
    return [name for _, name in sorted(ranked)]


def display(name: str) -> str:
    """The report's column name of an experiment (a method's or an arm's); the name itself when unknown."""
    spec = methods().get(name) or ARMS.get(name)
    return spec.display if spec is not None else name


def get(name: str) -> MethodSpec:
    """The spec of a pretext experiment; UserError listing the registered ones for anything else."""
    registered = methods()
    if name not in registered:
        raise UserError(f"unknown experiment {name!r}; valid: {', '.join(experiments())} (+experiment=<name>)")
    return registered[name]
