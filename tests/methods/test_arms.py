"""The arms without a pretext stage (supervised, FixMatch, pretrained, raw pixels) are one table in the method
registry: their report columns, ranks and "no pretext stage" come from it, and no method can take their names."""

from __future__ import annotations

import pytest

from ssl_lightning.methods import registry
from ssl_lightning.report.columns import display
from ssl_lightning.report.configs import relevant


def test_every_experiment_has_its_own_column_name_in_report_order():
    names = registry.experiments()
    shown = {name: display(name, "finetune") for name in names}
    assert len(set(shown.values())) == len(names) and all(text != name for name, text in shown.items())
    assert [name for name in names if name in registry.ARMS] == ["supervised", "fixmatch", "pretrained", "raw_pixels"]
    assert display(registry.FIXMATCH, "finetune") == "FixMatch"


@pytest.mark.parametrize("arm", sorted(registry.ARMS))
def test_no_arm_has_a_pretext_stage_so_its_pretext_keys_never_split_a_column(arm):
    config = {"downstream": {"lr": 0.1}, "pretext": {"epochs": 2}, "pretext_data": {"target": {"name": "target"}}}
    assert set(relevant(config, arm)) == {"downstream.lr"}


@pytest.mark.parametrize("arm", sorted(registry.ARMS))
def test_a_method_cannot_take_an_arm_name(arm):
    spec = next(iter(registry.methods().values()))
    with pytest.raises(RuntimeError, match="without a pretext stage"):
        registry.register(registry.MethodSpec(arm, "x", spec.section, spec.params, spec.build))
