"""The divergence guard catches a NaN without reading the loss back every step."""

from __future__ import annotations

import re

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lightning.training.finite_guard import DivergenceError, FiniteLossGuard


class NanAtStep(pl.LightningModule):
    """A tiny regression whose loss turns NaN from a chosen step on."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.layer, self.bad_step = nn.Linear(2, 1), bad_step

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = self.layer(x).pow(2).mean()
        return loss * float("nan") if self.global_step >= self.bad_step else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(bad_step: int, interval: int, batches: int = 20, epochs: int = 2) -> FiniteLossGuard:
    guard = FiniteLossGuard("pretext", interval=interval)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[guard], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    data = DataLoader(TensorDataset(torch.randn(batches * 4, 2)), batch_size=4)
    trainer.fit(NanAtStep(bad_step), data)
    return guard


@pytest.mark.parametrize("interval", [1, 8, 100])
def test_nan_stops_the_stage_naming_the_first_bad_step(interval):
    with pytest.raises(DivergenceError) as caught:
        fit(bad_step=5, interval=interval)
    assert re.fullmatch(r"pretext loss became nan at epoch 0, step 5; lower pretext.lr \(e.g. by 10x\) and run again",
                        str(caught.value))


def test_nan_in_the_second_epoch_names_that_epoch():
    with pytest.raises(DivergenceError, match=r"at epoch 1, step 23;"):
        fit(bad_step=23, interval=100)


def test_finite_losses_pass():
    fit(bad_step=10_000, interval=3)
