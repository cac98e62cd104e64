"""One identity rule per cache key (ssl_lightning/config/identity.py): every config key is part of the pretext store
key, the downstream work-folder key, or declared as changing neither, and the keys follow the declarations.

Before, the downstream key left out `data.val_per_label` (a resumed cell could reuse candidates chosen on another
validation subset) and the pretext key held `data.balance` (which does not change the pretext pool).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssl_lightning.config.identity import DECLARED, DOWNSTREAM, PRETEXT, declaration, stage_values
from ssl_lightning.config.settings import RunSettings, from_config
from ssl_lightning.methods import registry
from ssl_lightning.stages.pipeline import downstream_key
from ssl_lightning.stages.pretext_stage import pretext_key

CONF = Path(__file__).resolve().parents[1] / "conf"
SECTIONS = tuple(sorted({registry.get(name).section for name in registry.experiments()
                         if name not in registry.NO_PRETEXT_STAGE | {registry.RAW_PIXELS}}))


def _names(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


def _leaves(values: Any, prefix: str = ""):
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


def _composed(*overrides: str) -> dict[str, Any]:
    cfg = compose("config", overrides=["paths.cache=/tmp/unused", *overrides])
    values = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(values, dict)
    return values


def test_every_key_of_every_composed_config_is_declared() -> None:
    undeclared: set[str] = set()
    seen: set[str] = set()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # Groups add keys independently of each other: each option of each group once covers every key.
        configs = [_composed(f"+experiment={experiment}") for experiment in registry.experiments()]
        configs += [_composed("+experiment=simclr", f"{group}={option}")
                    for group in ("data", "downstream", "pretext_data", "profile", "trainer", "backbone")
                    for option in _names(group)]
    for values in configs:
        values.pop("hydra", None)
        for key in _leaves(values):
            seen.add(key)
            if declaration(key, SECTIONS) is None:
                undeclared.add(key)
    assert undeclared == set(), "declare these in ssl_lightning/config/identity.py DECLARED"
    assert {"data.val_per_label", "data.balance", "downstream.lr", "simclr.temperature"} <= seen


def test_every_declaration_that_changes_no_stage_says_why() -> None:
    for key, declared in DECLARED.items():
        assert declared.stages or declared.why_not, key


@pytest.fixture(scope="module")
def settings() -> RunSettings:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=simclr", "data=synthetic", "profile=smoke",
                                           "paths.cache=/tmp/unused"])
    return from_config(cfg)


def _with(settings: RunSettings, dotted: str, value: Any) -> RunSettings:
    config = OmegaConf.to_container(OmegaConf.create(settings.config))
    assert isinstance(config, dict)
    OmegaConf.update(node := OmegaConf.create(config), dotted, value, force_add=True)
    return replace(settings, config=OmegaConf.to_container(node))


def _keys(settings: RunSettings) -> tuple[str, str]:
    key = pretext_key(settings, [{"entry": "target", "target": True}])
    return key, downstream_key(settings, key, {"train": "same pixels", "test": "same pixels"})


@pytest.mark.parametrize(("dotted", "value", "pretext_changes", "downstream_changes"), [
    ("data.val_per_label", 0.5, False, True),  # was missing from the downstream key
    ("data.balance", True, False, True),  # was in the pretext key
    ("data.fraction", 0.5, False, True),
    ("data.split_seed", 7, False, True),
    ("data.val_split", 0.2, True, True),
    ("data.hed_jitter", 0.05, True, True),
    ("pretext.lr", 0.3, True, True),  # downstream through the pretext key
    ("downstream.lr", 0.3, False, True),
    ("pretext.reuse", False, False, False),
    ("data.eval_batch_size", 64, False, False),
    ("trainer.enable_progress_bar", True, False, False),
    ("trainer.precision", "bf16-mixed", True, True),
])
def test_keys_follow_the_declarations(settings, dotted, value, pretext_changes, downstream_changes) -> None:
    before, after = _keys(settings), _keys(_with(settings, dotted, value))
    assert (before[0] != after[0], before[1] != after[1]) == (pretext_changes, downstream_changes)


def test_every_present_declared_key_reaches_its_stage_s_key(settings) -> None:
    """Each key declared for a stage, changed alone, changes that stage's key (no declaration is dead)."""
    for stage, index in ((PRETEXT, 0), (DOWNSTREAM, 1)):
        for dotted in stage_values(settings.config, stage):
            if dotted == "backbone.init":
                continue  # a file's content; changing it needs a file (covered by the init tests)
            changed = _with(settings, dotted, "changed-for-the-test")
            assert _keys(changed)[index] != _keys(settings)[index], dotted
