"""LARS and the weight-decay exclusion of BatchNorm and biases (pretext.optimizer=lars, exclude_norm_bias).

One LARS step is computed by hand (numbers written out below), and the papers' methods (SimCLR, BYOL, Barlow
Twins) are checked to exclude norm and bias parameters by default while every other method keeps one group.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from ssl_lightning.config.settings import from_config
from ssl_lightning.errors import UserError
from ssl_lightning.methods.lars import LARS
from ssl_lightning.methods.optim import OptimConfig, build_optimizer
from ssl_lightning.models.backbones import build_encoder
from ssl_lightning.stages.pretext_stage import build_method

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_one_lars_step_matches_a_hand_computation() -> None:
    weight = torch.nn.Parameter(torch.tensor([[3.0, 4.0]], dtype=torch.float64))  # ||w|| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    weight.grad = torch.tensor([[0.1, -0.2]], dtype=torch.float64)
    bias.grad = torch.tensor([0.5], dtype=torch.float64)
    config = OptimConfig(optimizer="lars", lr=0.5, weight_decay=0.01, momentum=0.9, nesterov=False,
                         trust_coefficient=0.001)
    optimizer = build_optimizer([weight, bias], config)
    optimizer.step()
    # weight: d = g + 0.01 w = [0.13, -0.16]; ||d|| = sqrt(0.0169 + 0.0256) = 0.2061553; ratio = 0.001 * 5 / ||d||
    ratio = 0.005 / (0.13**2 + 0.16**2) ** 0.5
    expected = [3.0 - 0.5 * ratio * 0.13, 4.0 + 0.5 * ratio * 0.16]
    torch.testing.assert_close(weight.detach(), torch.tensor([expected], dtype=torch.float64), rtol=1e-12, atol=0)
    # bias: no weight decay, no adaptation: plain SGD step of lr * g
    torch.testing.assert_close(bias.detach(), torch.tensor([1.0 - 0.5 * 0.5], dtype=torch.float64))
    # second step: the momentum buffer carries 0.9 of the first adapted update
    first_update = torch.tensor([[0.13, -0.16]], dtype=torch.float64) * ratio
    before = weight.detach().clone()
    weight.grad = torch.tensor([[0.1, -0.2]], dtype=torch.float64)
    bias.grad = torch.zeros(1, dtype=torch.float64)
    optimizer.step()
    d = torch.tensor([[0.1, -0.2]], dtype=torch.float64) + 0.01 * before
    second_update = d * 0.001 * torch.linalg.vector_norm(before) / torch.linalg.vector_norm(d)
    torch.testing.assert_close(weight.detach(), before - 0.5 * (0.9 * first_update + second_update), rtol=1e-12,
                               atol=0)
    torch.testing.assert_close(bias.detach(), torch.tensor([0.75 - 0.5 * 0.9 * 0.5], dtype=torch.float64))


def test_lars_trust_ratio_is_one_for_zero_weights() -> None:
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    weight.grad = torch.ones(2, 2)
    LARS([weight], lr=0.1, momentum=0.0).step()
    torch.testing.assert_close(weight.detach(), torch.full((2, 2), -0.1))


def _settings(experiment: str, *extra: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={experiment}", "data=synthetic", "profile=smoke",
                                            "paths.cache=/tmp/unused", *extra])
    return from_config(cfg)


def _groups(experiment: str, *extra: str) -> tuple[list[dict], object]:
    settings = _settings(experiment, *extra)
    module = build_method(settings, build_encoder(settings.backbone, 3, 16))
    return module.configure_optimizers()["optimizer"].param_groups, module


@pytest.mark.parametrize("experiment", ["simclr", "byol", "barlow_twins"])
def test_the_papers_that_exclude_norm_and_bias_do_so_by_default(experiment: str) -> None:
    groups, module = _groups(experiment)
    assert len(groups) == 2
    decayed, excluded = groups
    assert decayed["weight_decay"] == 5e-4 and excluded["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"])
    norm_and_bias = [p for p in module.parameters() if p.requires_grad and p.ndim <= 1]
    assert {id(p) for p in excluded["params"]} == {id(p) for p in norm_and_bias} and norm_and_bias


@pytest.mark.parametrize("experiment", ["rotation", "rotation_jitter", "moco", "dino"])
def test_other_methods_keep_one_group_with_decay_on_everything(experiment: str) -> None:
    groups, module = _groups(experiment)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4
    assert isinstance(module.configure_optimizers()["optimizer"], torch.optim.SGD)


def test_lars_is_chosen_from_the_config_and_never_adapts_norm_and_bias() -> None:
    groups, _ = _groups("rotation", "pretext.optimizer=lars", "pretext.trust_coefficient=0.002")
    assert [g["lars_adapt"] for g in groups] == [True, False]
    assert groups[0]["trust_coefficient"] == 0.002 and groups[1]["weight_decay"] == 0.0


def test_a_bad_trust_coefficient_is_a_user_error() -> None:
    with pytest.raises(UserError, match="trust_coefficient"):
        _settings("simclr", "pretext.optimizer=lars", "pretext.trust_coefficient=0")
