"""One schema: every key's default, range, help and stage live on its settings field, and nowhere else.

conf/ may hold only presets (values that differ from the field default), conf/schema/ and docs/configuration.md
are generated from the fields and must be current, and functions take the schema's defaults instead of their own.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from ssl_lightning.config import key_table, schema_files
from ssl_lightning.config.schema import field_of, sections
from ssl_lightning.schema_fields import STAGES, default_of, keys, meta

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# Equal to the default on purpose: the value adds the key to a section whose schema node lacks it.
WRITTEN_OUT = {("profile/paper.yaml", "downstream.batch_size")}  # k-NN's section: dropping it would change its key


def _leaves(values: Any, prefix: str = ""):
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, values


def _package(path: Path) -> str:
    """Where a conf file's values land: the root (config.yaml, `# @package _global_`) or its group."""
    if path.parent == CONF or "# @package _global_" in path.read_text():
        return ""
    return path.parent.name


def _conf_values() -> list[tuple[str, str, Any]]:
    """(file, dotted key, value) of every value a hand-written conf file sets."""
    found = []
    for path in sorted(CONF.rglob("*.yaml")):
        relative = path.relative_to(CONF)
        if relative.parts[0] in ("schema", "hydra", "pretext_data"):  # generated; Hydra's; data set entries
            continue
        values = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
        values.pop("defaults", None)
        values.pop("hydra", None)
        if not values:  # conf/trainer/cpu.yaml: every key at its default
            continue
        package = _package(path)
        for key, value in _leaves(values):
            found.append((str(relative), f"{package}.{key}" if package else key, value))
    return found


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_every_settings_field_has_its_metadata():
    missing = [f"{section}.{name}" for section, cls in sections().items() for name, f in keys(cls).items()
               if meta(f) is None or not meta(f).help or meta(f).stage not in STAGES]
    assert missing == []


def test_conf_holds_only_presets_that_differ_from_the_schema():
    repeated = []
    for file, key, value in _conf_values():
        field = field_of(key)
        if field is None or (file, key) in WRITTEN_OUT:
            continue
        option = Path(file).stem
        if key.endswith(".name") and value == option:  # data=cifar10 says `name: cifar10`
            continue
        if value == _plain(default_of(field)) and value != {}:
            repeated.append(f"{file}: {key}={value!r} is the schema default")
    assert repeated == []


def test_every_conf_value_is_a_schema_key():
    """A key in conf/ that no settings field declares has its default outside the schema."""
    unknown = [f"{file}: {key}" for file, key, value in _conf_values()
               if field_of(key) is None and not (value == {} and key in sections())]  # `simclr: {}`: a section
    assert unknown == []


@pytest.mark.parametrize("name", sorted(schema_files.nodes()))
def test_conf_schema_is_generated_from_the_dataclasses(name):
    path = CONF / "schema" / f"{name}.yaml"
    assert path.read_text() == schema_files.render(schema_files.nodes()[name]), (
        "run: python -m ssl_lightning.config.schema_files")


def test_conf_schema_has_no_stale_files():
    assert {p.stem for p in (CONF / "schema").glob("*.yaml")} == set(schema_files.nodes())


def test_docs_configuration_is_current():
    assert (ROOT / "docs" / "configuration.md").read_text() == key_table.render(), (
        "run: python -m ssl_lightning.config.key_table > docs/configuration.md")


def test_functions_take_the_schema_defaults():
    from ssl_lightning.methods.rotation import RotationPretext
    from ssl_lightning.methods.simclr import SimCLRPretext
    from ssl_lightning.probes.config import ProbeSettings
    from ssl_lightning.probes.logistic import fit_logistic, select_penalty

    for function in (fit_logistic, select_penalty):
        assert inspect.signature(function).parameters["max_iter"].default == ProbeSettings().max_iter
    assert inspect.signature(RotationPretext).parameters["jitter_strength"].default is None
    assert list(inspect.signature(SimCLRPretext).parameters) == ["encoder", "optim", "epochs", "params", "changes"]
