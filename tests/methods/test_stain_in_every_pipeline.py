"""data.hed_jitter reaches every training augmentation of a run: each pretext method's views and the downstream
classifier's batches, drawn from the trainer's augmentation stream (same stream, same views)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods import registry
from tests.methods.lightning_kit import (
    compact_encoder,
    constant_sgd,
    downstream_data,
    synthetic_images,
    watch_encoder_inputs,
)

SMALL = {"byol": {"proj_hidden_dim": 16, "proj_dim": 8, "pred_hidden_dim": 16},
         "moco": {"proj_hidden_dim": 16, "proj_dim": 8, "queue_size": 16},
         "barlow_twins": {"proj_dim": 16},
         "dino": {"out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8, "local_crops": 1},
         "simclr": {"proj_dim": 8, "proj_hidden_dim": 16}}
METHODS = [name for name, spec in registry.methods().items() if not spec.needs_labels]  # a pretext step on images alone


def _module(name: str) -> pl.LightningModule:
    torch.manual_seed(0)
    if name == "classifier":
        return Classifier(compact_encoder(), 4, constant_sgd(0.1), 1)
    spec = registry.get(name)
    return spec.build(compact_encoder(), constant_sgd(0.1), 1, spec.params(**SMALL.get(name, {})))


def _encoder_inputs(name: str, hed_jitter: float) -> list[torch.Tensor]:
    """What the encoder receives in one training step on a fixed batch, under a stream with this stain jitter."""
    module = _module(name)
    seen, images, streams = watch_encoder_inputs(module, hed_jitter)
    if name == "classifier":  # its training_step logs: one real optimisation step
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[streams], max_steps=1,
                             limit_val_batches=0, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, use_distributed_sampler=False)
        trainer.fit(module, datamodule=downstream_data(synthetic_images(train_size=32), batch_size=4))
    else:
        module.pretext_step(images.float() / 255)
    return seen


@pytest.mark.parametrize("name", [*METHODS, "classifier"])
def test_stain_jitter_changes_every_pipeline_s_views_and_the_stream_repeats_them(name: str) -> None:
    plain, again, stained = _encoder_inputs(name, 0.0), _encoder_inputs(name, 0.0), _encoder_inputs(name, 0.2)
    assert all(torch.equal(a, b) for a, b in zip(plain, again, strict=True))  # one stream, one set of views
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(plain, stained, strict=True))
