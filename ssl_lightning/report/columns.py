"""Table columns: one per method and per non-default pretext data / init, in the order of the original study."""

from __future__ import annotations

from pathlib import PurePath

from ssl_lightning.methods import registry
from ssl_lightning.methods.supervised_features import NAME as SUPERVISED_FEATURES
from ssl_lightning.record import RunRecord

METHODS = tuple(registry.experiments())  # the original study's order first, then the other registered methods
DISPLAY = {name: registry.display(name) for name in METHODS}  # the methods' and the arms' (registry.ARMS) names
RANDOM_ENCODER = "Random encoder"  # the supervised experiment under a frozen probe: nothing was trained before
# The bounds of every frozen-feature table, its last two columns (registry ranks): the floor, then the ceiling.
FLOOR = registry.RAW_PIXELS  # no encoder: the probe on the pixels
CEILING = SUPERVISED_FEATURES  # the backbone trained with every pool label, frozen (methods/supervised_features.py)
PROBES = ("linear", "knn")  # protocols that train nothing in the encoder
_DEFAULT_PRETEXT = {"", "target", "default", "same"}
_DEFAULT_INIT = {"", "random", "none", "scratch"}


def _pretext_part(record: RunRecord) -> str | None:
    """`pretext_data` when it names something other than the downstream data set (a supervised run has none)."""
    value = record.pretext_data
    if value is None or record.experiment == registry.SUPERVISED:
        return None
    text = "+".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    return None if text.lower() in _DEFAULT_PRETEXT or text == record.data else text


def _init_part(record: RunRecord) -> str | None:
    """`init` (or, in older files, config.backbone.init) when it is not a random initialisation."""
    value = record.init
    if value is None:
        backbone = (record.config if isinstance(record.config, dict) else {}).get("backbone") or {}
        value = backbone.get("init") if isinstance(backbone, dict) else None
    if value is None or str(value).lower() in _DEFAULT_INIT:
        return None
    text = str(value)
    name = PurePath(text).name if ("/" in text or "\\" in text) else text
    return f"init={name}"


def _weights_parts(record: RunRecord) -> list[str | None]:
    """`pretrained`'s column is named after its weights: (architecture, source), e.g. (resnet18, torchvision)."""
    backbone = (record.config if isinstance(record.config, dict) else {}).get("backbone") or {}
    model = None
    if record.backbone == "timm":
        model = (record.details or {}).get("backbone_model") or (backbone.get("model") if isinstance(backbone, dict)
                                                                 else None)
    init = (_init_part(record) or "").removeprefix("init=")
    return [str(model or record.backbone), init or None]


def variant(record: RunRecord, show_backbone: bool = False) -> tuple[str, ...]:
    """What sets this run apart from the default of its method; empty for a default run."""
    if record.experiment == registry.PRETRAINED:
        return tuple(p for p in _weights_parts(record) if p)
    parts = [_pretext_part(record), _init_part(record)]
    if show_backbone:
        parts.append(str(record.backbone))
    return tuple(p for p in parts if p)


def display(experiment: str, protocol: str | None = None) -> str:
    """The method's name; the supervised experiment under a frozen-encoder probe (linear, k-NN) is an untrained
    encoder and says so."""
    if experiment == registry.SUPERVISED and protocol in PROBES:
        return RANDOM_ENCODER
    return DISPLAY.get(experiment, experiment)


def label(experiment: str, parts: tuple[str, ...], config_parts: tuple[str, ...] = (),
          protocol: str | None = None) -> str:
    """'SimCLR (target+kidney) [downstream.lr=0.01]': variant in (), differing config keys in []."""
    name = display(experiment, protocol)
    text = f"{name} ({', '.join(parts)})" if parts else name
    return f"{text} [{', '.join(config_parts)}]" if config_parts else text


def order(experiment: str, parts: tuple[str, ...],
          config_parts: tuple[str, ...] = ()) -> tuple[int, str, tuple[str, ...], tuple[str, ...]]:
    """Sort key: study method order first (unknown methods after), then the default variant before others."""
    rank = METHODS.index(experiment) if experiment in METHODS else len(METHODS)
    return rank, experiment, parts, config_parts
