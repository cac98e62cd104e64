"""Barlow Twins: the loss against a written-out reference (batch normalisation, cross-correlation, lambda)."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_lightning.methods.barlow_twins import BarlowTwinsParams, BarlowTwinsPretext, barlow_twins_loss
from tests.methods.lightning_kit import compact_encoder, constant_sgd, fit, pretext_data, synthetic_images


def reference_barlow(z1: list[list[float]], z2: list[list[float]], lambd: float) -> float:
    n, d = len(z1), len(z1[0])

    def normalised(z):
        columns = []
        for j in range(d):
            values = [row[j] for row in z]
            mean = sum(values) / n
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / n + 1e-5)
            columns.append([(v - mean) / std for v in values])
        return columns  # d lists of n values

    a, b = normalised(z1), normalised(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(x * y for x, y in zip(a[i], b[j], strict=True)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return loss


def test_loss_matches_the_reference():
    generator = torch.Generator().manual_seed(2)
    z1 = torch.randn(9, 4, generator=generator, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(9, 4, generator=generator, dtype=torch.float64)
    loss = barlow_twins_loss(z1, z2, 5e-3)
    assert float(loss) == pytest.approx(reference_barlow(z1.tolist(), z2.tolist(), 5e-3), rel=1e-10)


def test_gathered_rows_give_the_global_batch_loss():
    """With a gather, the statistics are those of all rows (here a stand-in that adds another 'process')."""
    generator = torch.Generator().manual_seed(3)
    z1, z2, other1, other2 = (torch.randn(6, 4, generator=generator, dtype=torch.float64) for _ in range(4))
    others = iter([other1, other2])
    gathered = barlow_twins_loss(z1, z2, 5e-3, gather=lambda z: torch.cat([z, next(others)]))
    assert float(gathered) == pytest.approx(float(barlow_twins_loss(torch.cat([z1, other1]),
                                                                      torch.cat([z2, other2]), 5e-3)))
    assert float(gathered) != pytest.approx(float(barlow_twins_loss(z1, z2, 5e-3)))


def test_decorrelated_identical_views_cost_nothing():
    z = torch.linalg.qr(torch.randn(64, 8, dtype=torch.float64))[0]  # orthogonal columns ...
    z = z - z.mean(dim=0)  # ... centred: the cross-correlation is close to the identity
    assert float(barlow_twins_loss(z, z, 5e-3)) < 0.05


def test_training_steps_are_finite(tmp_path):
    module = BarlowTwinsPretext(compact_encoder(), constant_sgd(0.05), epochs=1,
                                params=BarlowTwinsParams(proj_dim=32))
    losses = fit(module, pretext_data(synthetic_images(train_size=128), batch_size=16), steps=3, root=str(tmp_path))
    assert all(math.isfinite(v) for v in losses)
