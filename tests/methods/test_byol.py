"""BYOL: the loss against a written-out reference, the cosine EMA schedule, and a real Trainer updating the
target after each optimizer step while the target never enters the optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_lightning.methods.byol import BYOLParams, BYOLPretext
from ssl_lightning.methods.losses import byol_loss
from ssl_lightning.methods.momentum import cosine_momentum, ema_update
from tests.methods.lightning_kit import compact_encoder, constant_sgd, fit, pretext_data, state_copy, synthetic_images

SMALL = BYOLParams(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32)


def reference_byol(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Row by row: 2 - 2 <p, z> / (|p| |z|), then the mean."""
    total = 0.0
    for p, z in zip(prediction.tolist(), target.tolist(), strict=True):
        dot = sum(a * b for a, b in zip(p, z, strict=True))
        total += 2 - 2 * dot / (math.sqrt(sum(a * a for a in p)) * math.sqrt(sum(b * b for b in z)))
    return total / len(prediction)


def test_loss_matches_the_reference_and_spares_the_target():
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = byol_loss(prediction, target)
    assert float(loss) == pytest.approx(reference_byol(prediction.detach(), target.detach()), rel=1e-12)
    loss.backward()
    assert target.grad is None and prediction.grad is not None
    assert float(byol_loss(target.detach(), 3 * target.detach())) == pytest.approx(0.0, abs=1e-12)


def test_cosine_momentum_runs_from_base_to_one():
    assert cosine_momentum(0.996, 0, 100) == pytest.approx(0.996)
    assert cosine_momentum(0.996, 50, 100) == pytest.approx(0.998)
    assert cosine_momentum(0.996, 100, 100) == pytest.approx(1.0)
    assert cosine_momentum(0.996, 25, 100) < cosine_momentum(0.996, 75, 100)


def test_ema_update_formula():
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = target.weight.detach().clone()
    ema_update(target, online, 0.9)
    torch.testing.assert_close(target.weight, 0.9 * before + 0.1 * online.weight.detach())


def test_training_moves_the_target_by_ema_only(tmp_path):
    images = synthetic_images(train_size=128)
    module = BYOLPretext(compact_encoder(), constant_sgd(0.05), epochs=1, params=SMALL)
    optimised = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in module.target_encoder.parameters()}
    assert not optimised & {id(p) for p in module.target_projector.parameters()}
    initial = state_copy(module)
    losses = fit(module, pretext_data(images, batch_size=32), steps=4, root=str(tmp_path))
    assert all(math.isfinite(v) for v in losses)
    after = state_copy(module)
    name = "target_encoder.body.0.weight"
    assert not torch.equal(after[name], initial[name])  # the target moved ...
    assert not torch.equal(after[name], after["encoder.body.0.weight"])  # ... but lags the online network
    assert module.momentum == pytest.approx(1.0)  # the last step of a 4-step run ends the cosine schedule
    assert all(p.grad is None for p in module.target_encoder.parameters())
