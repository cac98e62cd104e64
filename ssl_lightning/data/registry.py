"""The data-set registry: every module of `ssl_lightning.data` may register a data set.

A loader module declares, with `register(DatasetSpec(...))` at import time, its name (`data=<name>`), its loader
and the properties the pipeline and the leakage guards decide on (which test split, how its images are told apart
from the target's). Those properties are required fields, so a new data set cannot be registered without saying
how the leakage guards see it; `load_dataset`, `data/leakage.py`, `data/pretext_sources.py` and the data settings
look them up here instead of keeping lists of names. Adding a data set is one module plus its conf files.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ssl_lightning.errors import UserError

if TYPE_CHECKING:
    from ssl_lightning.data.base import ImageSet
    from ssl_lightning.data.config import DataConfig

TestSplit = Literal["own", "drawn", "none"]
Leakage = Literal["by_name", "files", "generated"]
TEST_SPLITS = ("own", "drawn", "none")
LEAKAGE = ("by_name", "files", "generated")
RESERVED = frozenset({"target"})  # pretext_data's entry for the downstream data set's own training pool
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: its loader and what the pipeline and the leakage guards need to know about it.

    test_split:
      "own"   its own fixed test split (the built-in and synthetic data sets);
      "drawn" the test split is drawn here by data.test_split, so data.test_folds may deal it in folds instead;
      "none"  no labels and no test split: pretext data only (pretext_data=[target,<name>]), never data=<name>.
    leakage, how the guard (data/leakage.py) recognises the target's validation and test images in it:
      "by_name"   fixed by the name (a downloaded data set): the same name as the target with another root holds
                  the target's images again, and is refused;
      "files"     image files on disk, listed by `files(config)`; compared with the target's validation and test
                  files by resolved path and bytes;
      "generated" generated from its settings, no files: an entry with the same `same_data` settings as the
                  target is the target itself (only its training pool is used, pretext_sources.source_configs).
    """

    name: str  # data=<name>, pretext_data.<entry>.name=<name>
    load: Callable[[DataConfig], ImageSet]
    test_split: TestSplit
    leakage: Leakage
    # leakage="files": (where it reads, its image files), or None when that place does not exist (the loader then
    # reports it in its own words).
    files: Callable[[DataConfig], tuple[Path, list[Path]] | None] | None = None
    # As pretext data, decoded straight at the target's image size (through the image store) instead of resized.
    decode_at_target_size: bool = False
    # DataConfig fields beyond name and root that pick its images: an entry equal on them is the target itself.
    same_data: tuple[str, ...] = ()
    groups: bool = False  # its images can carry patient/slide groups (data.group_by)
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name) or self.name in RESERVED:
            raise RuntimeError(f"data set name {self.name!r} must be lower_snake_case and not "
                               f"{' or '.join(sorted(RESERVED))}")
        if self.test_split not in TEST_SPLITS:
            raise RuntimeError(f"data set {self.name!r}: test_split={self.test_split!r} is not one of {TEST_SPLITS}")
        if self.leakage not in LEAKAGE:
            raise RuntimeError(f"data set {self.name!r}: leakage={self.leakage!r} is not one of {LEAKAGE}")
        if (self.leakage == "files") != (self.files is not None):
            raise RuntimeError(f"data set {self.name!r}: leakage='files' and a files(config) lister go together")

    @property
    def downstream(self) -> bool:
        """Labelled, so valid as data=<name>; otherwise pretext data only."""
        return self.test_split != "none"

    @property
    def drawn_test_split(self) -> bool:
        return self.test_split == "drawn"


_REGISTRY: dict[str, DatasetSpec] = {}
_discovered = False


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise RuntimeError(f"data set {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def discover() -> None:
    """Import, once, every module of the data package that builds a `DatasetSpec`, so that each registers its
    data set. The others are not imported: the DataModules would pull in Lightning, and a settings check (e.g.
    data.test_folds, refused before anything trains) should not wait for it."""
    global _discovered
    if _discovered:
        return
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        source = Path(__file__).with_name(f"{module.name}.py")
        if module.name != __name__.rpartition(".")[2] and source.is_file() and "DatasetSpec(" in source.read_text(
                encoding="utf-8"):
            importlib.import_module(f"{__package__}.{module.name}")
    _discovered = True


def specs() -> dict[str, DatasetSpec]:
    """Registered data sets by name."""
    discover()
    return dict(sorted(_REGISTRY.items()))


def names(downstream_only: bool = False) -> list[str]:
    """The valid data set names: every one, or those valid as data=<name>."""
    return [name for name, spec in specs().items() if spec.downstream or not downstream_only]


def find(name: str) -> DatasetSpec | None:
    return specs().get(name)


def get(name: str, pretext_only: bool = False) -> DatasetSpec:
    """The spec of a data set usable as data=<name> (or, with `pretext_only`, as pretext data); UserError listing
    the valid ones for anything else."""
    spec = find(name)
    if spec is not None and (spec.downstream or pretext_only):
        return spec
    if spec is not None:
        raise UserError(f"{name!r} has no labels and can only be pretext data (pretext_data=[target,{name}]); for "
                        f"data= use: {', '.join(names(downstream_only=True))}")
    raise UserError(f"unknown data set {name!r}; valid: {', '.join(names(not pretext_only))} (data=<name>)")
