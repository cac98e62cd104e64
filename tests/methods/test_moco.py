"""MoCo v2: InfoNCE against the queue checked against a written-out reference, and the queue's ring buffer."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_lightning.methods.losses import moco_loss
from ssl_lightning.methods.moco import MoCoParams, MoCoPretext
from tests.methods.lightning_kit import compact_encoder, constant_sgd, fit, pretext_data, synthetic_images

SMALL = MoCoParams(proj_hidden_dim=32, proj_dim=16, queue_size=40)


def reference_moco(queries, keys, queue, temperature: float) -> tuple[float, float]:
    """Per query: -log( exp(q.k+/T) / (exp(q.k+/T) + sum_j exp(q.n_j/T)) ) on unit vectors; top-1 of the positive."""
    unit = lambda rows: [[v / math.sqrt(sum(x * x for x in row)) for v in row] for row in rows.tolist()]  # noqa: E731
    dot = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    total, hits = 0.0, 0
    for q, k in zip(unit(queries), unit(keys), strict=True):
        logits = [dot(q, k) / temperature] + [dot(q, n) / temperature for n in unit(queue)]
        total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
        hits += int(max(range(len(logits)), key=logits.__getitem__) == 0)
    return total / len(queries), hits / len(queries)


def test_loss_matches_the_reference():
    generator = torch.Generator().manual_seed(1)
    queries, keys, queue = (torch.randn(n, 6, generator=generator, dtype=torch.float64) for n in (5, 5, 9))
    keys[0] = queries[0] * 2  # one sure hit
    loss, accuracy = moco_loss(queries, keys, queue, 0.2)
    expected_loss, expected_accuracy = reference_moco(queries, keys, queue, 0.2)
    assert float(loss) == pytest.approx(expected_loss, rel=1e-10)
    assert float(accuracy) == pytest.approx(expected_accuracy)


def test_queue_is_a_ring_buffer():
    module = MoCoPretext(compact_encoder(), constant_sgd(0.1), epochs=1, params=SMALL)
    first, second = torch.randn(30, 16), torch.randn(30, 16)
    module.enqueue(first)
    module.enqueue(second)
    assert int(module.queue_position) == 20
    torch.testing.assert_close(module.queue[:20], second[10:])  # wrapped round, overwriting the oldest keys
    torch.testing.assert_close(module.queue[30:], second[:10])
    torch.testing.assert_close(module.queue[20:30], first[20:])


def test_training_fills_the_queue_with_normalised_keys(tmp_path):
    images = synthetic_images(train_size=128)
    module = MoCoPretext(compact_encoder(), constant_sgd(0.05), epochs=1, params=SMALL)
    losses = fit(module, pretext_data(images, batch_size=8), steps=3, root=str(tmp_path))
    assert all(math.isfinite(v) for v in losses)
    assert int(module.queue_position) == 3 * 2 * 8 % 40  # both views' keys of every step
    torch.testing.assert_close(module.queue.norm(dim=1), torch.ones(40))
    assert not any(p.requires_grad for p in [*module.key_encoder.parameters(), *module.key_projector.parameters()])
