"""Defaults live in conf/: the typed settings' own defaults agree with the composed default config, and every
section refuses keys that nothing reads.

Tests, benchmarks and library users build settings in code; a dataclass default that disagrees with conf/ runs
them on another path than the CLI (TrainerSettings.channels_last was False in code, auto in conf/trainer/cpu.yaml).
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssl_lightning.config.settings import DownstreamSettings, TrainerSettings, from_config
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from ssl_lightning.methods import registry
from ssl_lightning.methods.optim import OptimConfig
from ssl_lightning.models.backbones import BackboneConfig

CONF = Path(__file__).resolve().parents[1] / "conf"


def composed(*overrides: str) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["paths.cache=/tmp/unused", *overrides])
    values = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(values, dict)
    return values


def _defaults(cls) -> dict[str, Any]:
    found = {}
    for field in fields(cls):
        if field.default is not MISSING:
            found[field.name] = field.default
        elif field.default_factory is not MISSING:
            found[field.name] = field.default_factory()
    return found


def _disagreements(cls, section: dict[str, Any]) -> list[str]:
    out = []
    for name, default in _defaults(cls).items():
        if name in section:
            value = section[name]
            value = tuple(value) if isinstance(value, list) else value
            if cls is DataConfig and name == "val_seed" and default is None and value == section.get("split_seed"):
                continue  # None follows the split seed; conf gives both the same ${seed}
            if value != default:
                out.append(f"{cls.__name__}.{name}={default!r} but conf says {value!r}")
    return out


def test_dataclass_defaults_agree_with_the_composed_default_config() -> None:
    values = composed()
    synthetic = OmegaConf.to_container(OmegaConf.load(CONF / "data" / "synthetic.yaml"))
    synthetic_only = {k: v for k, v in synthetic.items() if k not in values["data"] and k != "name"}
    problems = (_disagreements(TrainerSettings, values["trainer"]) + _disagreements(DataConfig, values["data"])
                + _disagreements(DataConfig, synthetic_only) + _disagreements(BackboneConfig, values["backbone"])
                + _disagreements(OptimConfig, values["pretext"])
                + _disagreements(DownstreamSettings, values["downstream"]))
    assert problems == []


@pytest.mark.parametrize("trainer", sorted(path.stem for path in (CONF / "trainer").glob("*.yaml")))
def test_every_trainer_key_is_in_the_composed_config(trainer: str) -> None:
    """Each trainer choice composes every TrainerSettings field (conf/schema/trainer.yaml): a code default decides
    nothing the composed config does not show."""
    assert set(composed(f"trainer={trainer}")["trainer"]) == {f.name for f in fields(TrainerSettings)}


@pytest.mark.parametrize("experiment", registry.experiments())
def test_method_parameter_defaults_agree_with_the_experiment_files(experiment: str) -> None:
    if experiment in registry.NO_PRETEXT_STAGE | {registry.RAW_PIXELS}:  # no method section
        return
    spec = registry.get(experiment)
    section = composed(f"+experiment={experiment}").get(spec.section) or {}
    assert _disagreements(spec.params, section) == []


@pytest.mark.parametrize("key", ["pretext.momentun", "downstream.weight_decai", "trainer.devises", "data.fractoin",
                                 "backbone.widht", "simclr.temprature"])
def test_an_unknown_key_in_any_section_is_refused(key: str) -> None:
    values = composed("+experiment=simclr", "data=synthetic")
    section, name = key.split(".")
    values[section][name] = 1
    with pytest.raises(UserError, match=name):
        from_config(OmegaConf.create(values))


def test_suite_sections_set_by_an_experiment_file_are_no_method_sections() -> None:
    """simclr.yaml sets `pretext.exclude_norm_bias`; `pretext.*` overrides stay the suite's for every experiment."""
    from ssl_lightning.cli.cli_checks import method_sections, route_method_overrides

    assert method_sections(CONF)["simclr"] == {"simclr"}
    argv = ["+experiment=rotation", "pretext.lr=0.3", "pretext.exclude_norm_bias=true"]
    assert route_method_overrides(argv, CONF) == argv
