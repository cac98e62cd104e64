"""Which settings dataclass holds each config section: the map the range checks, the cache-key table and the
key table (docs/configuration.md) are generated from.

Every key of these sections is a field declared with `schema_fields.setting()` (default, range, help, stage);
keys outside every dataclass (`seed`, `fixmatch.*`, ...) are listed in `EXTRA` with the same metadata.
"""

from __future__ import annotations

from dataclasses import Field, dataclass
from functools import cache
from typing import Any

from ssl_lightning.data.config import DataConfig
from ssl_lightning.evaluation.fixmatch import FixMatchParams
from ssl_lightning.models.backbones import BackboneConfig
from ssl_lightning.models.pixels import DEFAULT_MAX_FEATURES
from ssl_lightning.schema_fields import BOTH, DOWNSTREAM, NEITHER, SEED, Setting, default_of, keys, setting

PRETEXT_DATA_ENTRY = "pretext_data.*"  # each entry of `pretext_data:` is a data set's settings

@dataclass(frozen=True)
class Suite:
    """Keys outside every section dataclass: the run itself and the two arms without a pretext stage."""

    experiment: str | None = setting(None, "", "the experiment: +experiment=<name> (conf/experiment/*.yaml)", BOTH)
    seed: int = setting(0, SEED, "training seed (model init, augmentation, batch order)", BOTH)

@dataclass(frozen=True)
class RawPixelsSection:
    """`raw_pixels:` (conf/experiment/raw_pixels.yaml; read by models/pixels.py)."""

    max_features: int = setting(DEFAULT_MAX_FEATURES, "", "larger images are area-averaged down to at most this many "
                                "values",
                                DOWNSTREAM)

@dataclass(frozen=True)
class Paths:
    cache: str = setting("${hydra:runtime.cwd}/outputs/cache", "", "pretext store and resumable work folders",
                         NEITHER, "where stored work lives")

@cache
def sections() -> dict[str, type]:
    """{section: settings dataclass}; '' holds the top-level keys, a method's section its Params."""
    from ssl_lightning.config.settings import DownstreamSettings, PretextSettings, TrainerSettings
    from ssl_lightning.methods import registry

    found: dict[str, type] = {"": Suite, "data": DataConfig, PRETEXT_DATA_ENTRY: DataConfig,
                              "backbone": BackboneConfig, "pretext": PretextSettings,
                              "downstream": DownstreamSettings, "trainer": TrainerSettings, "paths": Paths,
                              "fixmatch": FixMatchParams, "raw_pixels": RawPixelsSection}
    for spec in registry.methods().values():
        found.setdefault(spec.section, spec.params)
    return found

def section_of(dotted: str) -> tuple[str, str]:
    """('pretext_data.*', 'root') for 'pretext_data.extra.root'; ('', 'seed') for 'seed'."""
    head, _, rest = dotted.partition(".")
    if head == "pretext_data" and "." in rest:
        return PRETEXT_DATA_ENTRY, rest.split(".", 1)[1]
    return ("", head) if not rest else (head, rest)

@cache
def field_of(dotted: str) -> Field | None:
    """The schema field of a dotted config key (None for keys no dataclass declares, e.g. backbone.kwargs.depth)."""
    section, name = section_of(dotted)
    cls = sections().get(section)
    return None if cls is None else keys(cls).get(name)

def metadata(f: Field) -> Setting:
    return f.metadata["setting"]

def every_key() -> dict[str, Field]:
    """{dotted key: field} of every declared key, section by section."""
    return {(f"{section}.{name}" if section else name): f
            for section, cls in sections().items() for name, f in keys(cls).items()}

def default_values(cls: type) -> dict[str, Any]:
    return {name: default_of(f) for name, f in keys(cls).items()}
