"""EMA methods (DINO, BYOL, MoCo) on resume: the stored encoder is the one the paper evaluates, and the
momentum networks and queue continue exactly as in an uninterrupted run.

DINO used to hand its teacher to the encoder in `on_train_end`; a run killed after writing its final checkpoint
resumes into a fit that Lightning skips (no training hooks run), so the store received the student. The first test
kills the stage there (the fit finished and checkpointed, nothing stored) and resumes it through `run_pretext`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.data.augment_streams import AugmentStreams
from ssl_lightning.data.datamodules import PretextDataModule
from ssl_lightning.methods.byol import BYOLParams, BYOLPretext
from ssl_lightning.methods.moco import MoCoParams, MoCoPretext
from ssl_lightning.stages import pretext_stage
from ssl_lightning.stages.pipeline import prepare
from ssl_lightning.stages.pretext_store import PretextStore
from ssl_lightning.training.trainer_factory import build_trainer
from tests.methods.lightning_kit import compact_encoder, constant_sgd, state_copy, synthetic_images

CONF = Path(__file__).resolve().parents[2] / "conf"
SMALL_DINO = ["dino.out_dim=32", "dino.hidden_dim=32", "dino.bottleneck_dim=16", "dino.local_crops=2"]


def _dino_cell(cache: Path):
    overrides = ["+experiment=dino", "data=synthetic", "profile=smoke", f"paths.cache={cache}", "pretext.epochs=2",
                 "pretext.limit_train_batches=2", "pretext.limit_val_batches=1", *SMALL_DINO]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return prepare(compose("config", overrides=overrides))


def _store(cell, key: str, tb: Path):
    pretext = cell.pretext
    pretext_stage.run_pretext(cell.settings, cell.encoder, pretext.images, pretext.train_indices,
                              pretext.val_indices, key, tb, val_labels=cell.images.train_labels)
    loaded = PretextStore(cell.settings.cache_dir / "pretext").load(key)
    assert loaded is not None
    return loaded[0]


def test_dino_stores_the_teacher_after_a_kill_following_its_final_checkpoint(tmp_path) -> None:
    key = "dino-resume"
    straight = _store(_dino_cell(tmp_path / "straight"), key, tmp_path / "tb1")

    killed = _dino_cell(tmp_path / "killed")
    partial = PretextStore(killed.settings.cache_dir / "pretext").entry(key).partial_dir
    pretext = killed.pretext
    pretext_stage._train(killed.settings, killed.encoder, pretext.images, pretext.train_indices, pretext.val_indices,
                         partial, killed.images.train_labels)  # the whole fit ran and wrote last.ckpt; then a kill
    final = torch.load(partial / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["epoch"] == 1  # the final epoch's checkpoint (0-based)
    teacher = {k.removeprefix("teacher_encoder."): v for k, v in final["state_dict"].items()
               if k.startswith("teacher_encoder.")}
    student = {k.removeprefix("encoder."): v for k, v in final["state_dict"].items() if k.startswith("encoder.")}
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)

    resumed = _store(_dino_cell(tmp_path / "killed"), key, tmp_path / "tb2")  # a fresh process resumes the stage
    for name, value in resumed.items():
        torch.testing.assert_close(value, teacher[name], rtol=0, atol=0, msg=f"{name}: not the teacher's")
        torch.testing.assert_close(value, straight[name], rtol=0, atol=0, msg=f"{name}: differs from a straight run")


class KillAtEpoch(Callback):
    """Stops the process-to-be at the start of `epoch`, after the previous epoch's checkpoint was written."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def _fit(module, root: Path, extra: list[Callback], resume: bool) -> None:
    images = synthetic_images(train_size=96)
    pool = np.arange(64)
    data = PretextDataModule(images.train_images, pool, np.arange(64, 80), 16, 16, seed=3)
    last = ModelCheckpoint(dirpath=str(root), filename="last", save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    trainer = build_trainer(TrainerSettings(enable_progress_bar=False), 2, root / "tb", "pretext",
                            [last, AugmentStreams(3), *extra], 1.0, 1.0, root)
    trainer.fit(module, datamodule=data, ckpt_path=str(root / "last.ckpt") if resume else None, weights_only=True)


def _byol() -> BYOLPretext:
    torch.manual_seed(0)
    return BYOLPretext(compact_encoder(), constant_sgd(0.05), 2,
                       BYOLParams(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32))


def _moco() -> MoCoPretext:
    torch.manual_seed(0)
    return MoCoPretext(compact_encoder(), constant_sgd(0.05), 2,
                       MoCoParams(proj_hidden_dim=32, proj_dim=16, queue_size=40))


@pytest.mark.parametrize("build", [_byol, _moco], ids=["byol", "moco"])
def test_momentum_networks_continue_exactly_after_a_kill_between_epochs(tmp_path, build) -> None:
    straight = build()
    _fit(straight, tmp_path / "straight", [], resume=False)

    killed = build()
    with pytest.raises(RuntimeError, match="killed"):
        _fit(killed, tmp_path / "killed", [KillAtEpoch(1)], resume=False)
    resumed = build()  # a new process: fresh weights, everything else from the checkpoint
    _fit(resumed, tmp_path / "killed", [], resume=True)

    expected, got = state_copy(straight), state_copy(resumed)
    assert expected.keys() == got.keys()
    assert any(k.startswith(("target_", "key_")) for k in got)  # the momentum networks are in the state
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)
    assert resumed.momentum == straight.momentum > resumed.params.base_momentum
    assert resumed.evaluated_encoder() is resumed.encoder  # BYOL's online, MoCo's query encoder
