"""Evaluation batches sized by image area (data.eval_batch_pixels), and the stain option's grey-data error, as
`pipeline.prepare` applies them before anything trains."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_lightning.data.config import EVAL_BATCH_PIXELS, eval_batch
from ssl_lightning.errors import UserError
from ssl_lightning.stages.pipeline import prepare

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_the_sizing_rule() -> None:
    assert EVAL_BATCH_PIXELS == 512 * 32 * 32
    assert eval_batch(512, EVAL_BATCH_PIXELS, 28, 28) == 512  # Fashion-MNIST: the limit
    assert eval_batch(512, EVAL_BATCH_PIXELS, 32, 32) == 512  # CIFAR-10: exactly the budget
    assert eval_batch(512, EVAL_BATCH_PIXELS, 96, 96) == 56  # STL-10: 524288 // 9216
    assert eval_batch(512, EVAL_BATCH_PIXELS, 224, 224) == 10  # 524288 // 50176
    assert eval_batch(512, EVAL_BATCH_PIXELS, 2048, 2048) == 1  # never 0
    assert eval_batch(64, EVAL_BATCH_PIXELS, 16, 16) == 64  # a smaller limit stays the limit
    assert eval_batch(512, None, 224, 224) == 512  # null: no area cap


def _prepared(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=supervised", "data=synthetic", "data.train_size=40",
                                           "data.test_size=8", f"paths.cache={tmp_path}", *overrides])
    return prepare(cfg)


def test_a_224_px_cell_evaluates_10_images_at_a_time_by_default(tmp_path) -> None:
    assert _prepared(tmp_path, "data.image_size=224").settings.data.eval_batch_size == 10
    assert _prepared(tmp_path, "data.image_size=224",
                     "data.eval_batch_pixels=null").settings.data.eval_batch_size == 512
    assert _prepared(tmp_path).settings.data.eval_batch_size == 512  # 16 px


def test_stain_jitter_on_grey_data_is_one_user_error_before_training(tmp_path) -> None:
    with pytest.raises(UserError, match=r"data.hed_jitter=0.05 needs RGB images, but these have 1 channel"):
        _prepared(tmp_path, "data.channels=1", "data.hed_jitter=0.05")
    assert _prepared(tmp_path, "data.hed_jitter=0.05").settings.data.hed_jitter == 0.05


@pytest.mark.parametrize("override", ["data.hed_jitter=1.5", "data.hed_jitter=-0.1", "data.eval_batch_pixels=0"])
def test_bad_values_are_user_errors(tmp_path, override: str) -> None:
    with pytest.raises(UserError, match=override.split("=")[0]):
        _prepared(tmp_path, override)
