"""The method registry: every experiment file names a registered method (and back), typed defaults agree with
the files, bad values are one-line user errors, and the store key hashes only the chosen method's values."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ssl_lightning.cli.cli_checks import group_options, route_method_overrides
from ssl_lightning.config import settings as settings_module
from ssl_lightning.errors import UserError
from ssl_lightning.methods import registry
from ssl_lightning.report import columns
from ssl_lightning.stages.pretext_stage import build_method, pretext_key

CONF = Path(__file__).resolve().parents[2] / "conf"
METHODS = list(registry.methods())


def experiment_file(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{name}.yaml"))


def test_experiment_files_and_registry_name_the_same_experiments():
    assert sorted(group_options(CONF)["experiment"]) == sorted(registry.experiments())
    assert registry.experiments()[:4] == ["rotation", "rotation_jitter", "simclr", "supervised"]
    assert {"byol", "moco", "barlow_twins", "dino", "supervised_features"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_experiment_file_holds_the_typed_defaults(name):
    """Benchmarks build methods from the dataclass defaults: they must be the experiment file's values."""
    spec = registry.get(name)
    values = experiment_file(name)
    assert values["experiment"] == name
    assert spec.parse(values[spec.section]) == spec.params()
    # every key reaches the composed config through conf/schema/<section>.yaml, generated from the dataclass
    assert set(OmegaConf.load(CONF / "schema" / f"{spec.section}.yaml")) == set(asdict(spec.params()))


def test_unknown_experiment_lists_the_registered_ones():
    with pytest.raises(UserError) as caught:
        registry.get("byool")
    message = str(caught.value)
    assert "unknown experiment 'byool'" in message
    assert all(name in message for name in registry.experiments())


@pytest.mark.parametrize(("name", "values", "fragment"), [
    ("byol", {"proj_dim": 0}, "byol.proj_dim=0 must be a whole number >= 1"),
    ("byol", {"base_momentum": 1.5}, "byol.base_momentum=1.5 must be a number in [0, 1]"),
    ("moco", {"queue_size": 2.5}, "moco.queue_size=2.5 must be an integer"),
    ("barlow_twins", {"lambd": "x"}, "barlow_twins.lambd='x' must be a number"),
    ("dino", {"local_crop_min_scale": 0.5}, "dino.local_crop_min_scale=0.5 must be in (0, local_crop_max_scale]"),
    ("dino", {"teacher_tmp": 0.1}, "unknown config key(s) ['dino.teacher_tmp']"),
    ("simclr", {"grayscale_p": 2}, "simclr.grayscale_p=2.0 must be a number in [0, 1]"),
])
def test_bad_hyper_parameters_are_user_errors(name, values, fragment):
    with pytest.raises(UserError) as caught:
        registry.get(name).parse(values)
    assert fragment in str(caught.value)


def compose(experiment: str, **section_overrides) -> settings_module.RunSettings:
    """The composed config of one cell (smoke profile, synthetic data), plus whole sections merged over it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    # a method trained on the pool's labels is probed frozen only
    downstream = "linear" if experiment in METHODS and registry.get(experiment).needs_labels else "finetune"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = hydra_compose("config", overrides=[f"+experiment={experiment}", "profile=smoke", "data=synthetic",
                                                 f"downstream={downstream}", "paths.cache=/tmp/unused"])
    OmegaConf.set_struct(cfg, False)
    cfg = OmegaConf.merge(cfg, section_overrides)
    return settings_module.from_config(cfg)


def _fraction_field(name: str) -> str | None:
    """A hyper-parameter of the method in (0, 1) that its store key hashes (None when it has none)."""
    identity = registry.get(name).params().identity()
    return next((field for field, value in identity.items() if isinstance(value, float) and 0 < value < 1), None)


@pytest.mark.parametrize("name", [name for name in METHODS if _fraction_field(name)])
def test_store_key_changes_with_the_chosen_methods_values_only(name):
    settings = compose(name)
    spec = registry.get(name)
    base = pretext_key(settings, {"data": "same"})
    field = _fraction_field(name)
    changed = replace(settings.pretext.params, **{field: getattr(settings.pretext.params, field) / 2})
    assert pretext_key(replace(settings, pretext=replace(settings.pretext, params=changed)), {"data": "same"}) != base
    other = compose(name, **{s: {"temperature": 0.3} for s in ("simclr", "moco") if s != spec.section})
    assert pretext_key(other, {"data": "same"}) == base  # another method's section does not enter the key


def test_plain_rotation_ignores_the_jitter_strength():
    assert pretext_key(compose("rotation", rotation={"jitter_strength": 0.9}), {}) == pretext_key(
        compose("rotation"), {})
    assert pretext_key(compose("rotation"), {}) != pretext_key(compose("rotation_jitter"), {})


@pytest.mark.parametrize("name", METHODS)
def test_build_method_uses_the_registered_module(name):
    from ssl_lightning.models.backbones import build_encoder

    settings = compose(name)
    module = build_method(settings, build_encoder(settings.backbone, 3, 16))
    assert type(module).__module__ == f"ssl_lightning.methods.{name.removesuffix('_jitter')}"
    optimised = {id(p) for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in module.parameters() if p.requires_grad}
    assert all(id(p) in optimised for p in module.encoder.parameters())


def test_report_columns_come_from_the_registry():
    assert columns.METHODS[:4] == ("rotation", "rotation_jitter", "simclr", "supervised")
    assert [columns.DISPLAY[name] for name in ("byol", "moco", "barlow_twins", "dino")] == [
        "BYOL", "MoCo v2", "Barlow Twins", "DINO"]
    assert all(columns.DISPLAY[name] == spec.display for name, spec in registry.methods().items())


def test_method_overrides_are_routed_to_the_experiments_that_use_them():
    argv = ["+experiment=rotation,simclr", "simclr.temperature=0.2", "data.fraction=0.5"]
    assert route_method_overrides(argv, CONF) == ["+experiment=rotation,simclr", "++simclr.temperature=0.2",
                                                  "data.fraction=0.5"]
    with pytest.raises(UserError, match="simclr.temperature is a hyper-parameter of"):
        route_method_overrides(["+experiment=rotation", "simclr.temperature=0.2"], CONF)
    assert route_method_overrides(["data.fraction=0.5"], CONF) == ["data.fraction=0.5"]
