"""DINO: the loss against a written-out reference, temperature warm-up, centring, multi-crop shapes, and the
teacher (EMA, not optimised) handed to the downstream stage."""

from __future__ import annotations

import math

import pytest
import torch

from ssl_lightning.methods.dino import DINOParams, DINOPretext, teacher_temperature
from ssl_lightning.methods.losses import dino_loss
from tests.methods.lightning_kit import compact_encoder, constant_sgd, fit, pretext_data, synthetic_images

SMALL = DINOParams(out_dim=32, hidden_dim=32, bottleneck_dim=16, local_crops=2)


def _softmax(values: list[float], temperature: float) -> list[float]:
    top = max(v / temperature for v in values)
    exps = [math.exp(v / temperature - top) for v in values]
    return [e / sum(exps) for e in exps]


def reference_dino(student, teacher, center, ts: float, tt: float) -> float:
    total, pairs = 0.0, 0
    for t_index, t_view in enumerate(teacher):
        for s_index, s_view in enumerate(student):
            if s_index == t_index:
                continue
            rows = 0.0
            for t_row, s_row in zip(t_view.tolist(), s_view.tolist(), strict=True):
                target = _softmax([v - c for v, c in zip(t_row, center, strict=True)], tt)
                prob = _softmax(s_row, ts)
                rows += -sum(p * math.log(q) for p, q in zip(target, prob, strict=True))
            total += rows / len(t_view)
            pairs += 1
    return total / pairs


def test_loss_matches_the_reference():
    generator = torch.Generator().manual_seed(4)
    student = [torch.randn(3, 5, generator=generator, dtype=torch.float64) for _ in range(4)]  # 2 global, 2 local
    teacher = [torch.randn(3, 5, generator=generator, dtype=torch.float64) for _ in range(2)]
    center = torch.randn(1, 5, generator=generator, dtype=torch.float64)
    loss = dino_loss(student, teacher, center, 0.1, 0.04)
    assert float(loss) == pytest.approx(reference_dino(student, teacher, center[0].tolist(), 0.1, 0.04), rel=1e-10)


def test_teacher_temperature_warms_up_linearly():
    params = DINOParams()
    assert teacher_temperature(params, 0, 100) == pytest.approx(0.04)
    assert teacher_temperature(params, 15, 100) == pytest.approx(0.055)
    assert teacher_temperature(params, 30, 100) == pytest.approx(0.07)
    assert teacher_temperature(params, 99, 100) == pytest.approx(0.07)


def test_multi_crop_shapes_and_centre_update():
    module = DINOPretext(compact_encoder(), constant_sgd(0.1), epochs=1, params=SMALL)
    images = torch.rand(5, 3, 28, 28)
    global_crops, local_crops = module.crops(images)
    assert [tuple(c.shape) for c in global_crops] == [(5, 3, 28, 28)] * 2
    assert [tuple(c.shape) for c in local_crops] == [(5, 3, 12, 12)] * 2  # 96/224 of the side
    before = module.center.clone()
    batch_center = torch.randn(1, 32)
    module.update_center(batch_center)
    torch.testing.assert_close(module.center, 0.9 * before + 0.1 * batch_center)


def test_training_keeps_the_teacher_out_of_the_optimizer_and_hands_it_over(tmp_path):
    module = DINOPretext(compact_encoder(), constant_sgd(0.05), epochs=1, params=SMALL)
    optimised = {id(p) for g in module.configure_optimizers()["optimizer"].param_groups for p in g["params"]}
    assert not optimised & {id(p) for p in module.teacher_encoder.parameters()}
    assert not optimised & {id(p) for p in module.teacher_head.parameters()}
    losses = fit(module, pretext_data(synthetic_images(train_size=128), batch_size=16), steps=3, root=str(tmp_path))
    assert all(math.isfinite(v) for v in losses)
    assert float(module.center.abs().sum()) > 0  # centred on the teacher outputs seen
    assert module.evaluated_encoder() is module.teacher_encoder  # what pretext_stage.hand_over stores
    student, teacher = module.encoder.state_dict(), module.teacher_encoder.state_dict()
    assert any(not torch.equal(student[name], teacher[name]) for name in teacher)  # the EMA lags the student
