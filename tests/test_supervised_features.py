"""The supervised-features ceiling (+experiment=supervised_features): an encoder trained with cross-entropy on the
training pool's labels only (never a validation-pool or test label), stored like any pretext encoder and reused by
every budget, probed frozen, refused under fine-tuning in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from ssl_lightning.data.pool_labels import NO_LABEL, LabelledPretextDataModule
from ssl_lightning.errors import UserError
from ssl_lightning.methods import registry
from ssl_lightning.methods.supervised_features import ENCODER_KIND, NAME, SupervisedFeatures
from ssl_lightning.stages import pipeline, pretext_stage
from ssl_lightning.stages.pretext_store import PretextStore
from tests.helpers import log_text, results_files
from tests.methods.lightning_kit import compact_encoder, constant_sgd, watch_encoder_inputs

CONF = Path(__file__).resolve().parents[1] / "conf"
CELL = (f"+experiment={NAME}", "data=synthetic", "profile=smoke")


def _prepared(tmp_path: Path, *overrides: str) -> pipeline.PreparedCell:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*CELL, "downstream=linear", f"paths.cache={tmp_path / 'cache'}",
                                           *overrides])
    return pipeline.prepare(cfg)


def test_the_ceiling_trains_on_pool_labels_only_never_validation_or_test(tmp_path):
    cell = _prepared(tmp_path)
    split, images, pretext = cell.split, cell.images, cell.pretext
    assert pretext is not None and pretext.train_labels is not None
    assert registry.get(NAME).needs_labels
    pool, val = np.sort(split.pool), np.sort(split.val)
    assert len(val) > 0 and np.intersect1d(pool, val).size == 0
    assert np.array_equal(np.sort(pretext.train_indices), pool)
    assert len(pretext.images) == len(images.train_images)  # the test split is not among the pretext images
    labels = pretext.train_labels
    assert torch.equal(labels[torch.as_tensor(pool)], images.train_labels[torch.as_tensor(pool)].long())
    assert bool((labels[torch.as_tensor(val)] == NO_LABEL).all())  # a validation label never reaches training

    # The data module the pretext stage trains on: every row an epoch draws lies in the pool, labelled.
    data = pretext_stage.pretext_data_module(cell.settings, pretext.images, pretext.train_indices,
                                             pretext.val_indices, images.train_labels, pretext.train_labels)
    assert isinstance(data, LabelledPretextDataModule) and data.num_classes == images.num_classes
    loader = data.train_dataloader()
    seen = np.concatenate([data.train_set.indices[positions].numpy() for positions in loader.sampler])
    assert len(seen) > 0 and set(seen) <= set(pool) and not set(seen) & set(val)
    assert max(seen) < len(images.train_images)
    for batch_images, batch_labels in loader:
        assert len(batch_images) == len(batch_labels) and int(batch_labels.min()) >= 0

    # A validation row can never be passed off as a training row, nor an unlabelled row trained on.
    with pytest.raises(RuntimeError, match="without a pool label"):
        LabelledPretextDataModule(pretext.images, np.append(pretext.train_indices, val[0]), pretext.val_indices, 8,
                                  8, pretext.train_labels)
    module = SupervisedFeatures(compact_encoder(), constant_sgd(0.1), 1, num_classes=4)
    batch = torch.rand(2, 3, 16, 16)
    with pytest.raises(RuntimeError, match="without a pool label"):
        module.pretext_step(batch, torch.tensor([0, NO_LABEL]))
    loss, accuracy = module.pretext_step(batch, torch.tensor([0, 3]))
    assert loss.requires_grad and 0.0 <= float(accuracy) <= 1.0


def test_the_ceiling_refuses_pretext_data_without_labels(tmp_path):
    with pytest.raises(UserError, match="pretext_data=target"):
        _prepared(tmp_path, "pretext_data=synthetic")  # another generator seed: images without this task's labels


def test_fine_tuning_the_ceiling_is_one_line_naming_the_frozen_protocols(cli_in_process, tmp_path):
    done = cli_in_process(*CELL)  # downstream=finetune is the default
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert NAME in lines[0] and "downstream=linear" in lines[0] and "downstream=knn" in lines[0]
    assert "+experiment=supervised" in lines[0]  # where the fine-tuning comparison lives
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "pretext").exists()


def test_the_ceiling_end_to_end_trains_once_and_every_budget_reuses_it(cli_in_process, tmp_path):
    done = cli_in_process(*CELL, "downstream=linear", "data.fraction=0.25,0.5", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = sorted(results_files(tmp_path / "multirun"), key=lambda cell: cell["fraction"])
    assert [cell["fraction"] for cell in cells] == [0.25, 0.5]
    assert all(cell["status"] == "ok" for cell in cells), [cell.get("error") for cell in cells]
    for cell in cells:
        assert (cell["experiment"], cell["encoder"], cell["protocol"], cell["solver"]) == (NAME, ENCODER_KIND,
                                                                                          "linear", "lbfgs")
        # every training image outside the validation pool, whatever the budget
        assert cell["pretext_num_labeled"] == 512 - cell["num_val_pool"]
        assert 0.0 <= cell["test_acc"] <= 1.0 and cell["epochs"]["pretext"] == 1
    assert cells[0]["num_labeled"] < cells[1]["num_labeled"]
    assert len({cell["pretext_key"] for cell in cells}) == 1
    assert sorted(cell["pretext_reused"] for cell in cells) == [False, True]
    logs = log_text(tmp_path / "multirun")
    assert logs.count("training pretext stage") == 1 and logs.count("reusing pretext checkpoint") == 1
    loaded = PretextStore(tmp_path / "cache" / "pretext").load(cells[0]["pretext_key"])
    assert loaded is not None and loaded[1]["method"] == NAME


def _encoder_inputs(hed_jitter: float) -> list[torch.Tensor]:
    """What the ceiling's encoder receives in one training step on a fixed labelled batch, under a stream with this
    stain jitter (the generic stain test of tests/methods calls pretext_step without labels, which this method
    refuses)."""
    torch.manual_seed(0)
    module = SupervisedFeatures(compact_encoder(), constant_sgd(0.1), 1, num_classes=4)
    seen, images, _ = watch_encoder_inputs(module, hed_jitter)
    module.pretext_step(images.float() / 255, torch.tensor([0, 1, 2, 3]))
    return seen


def test_the_ceiling_trains_with_the_fine_tuning_augmentation_and_stain_jitter():
    plain, again, stained = _encoder_inputs(0.0), _encoder_inputs(0.0), _encoder_inputs(0.2)
    assert all(torch.equal(a, b) for a, b in zip(plain, again, strict=True))  # one stream, one set of views
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(plain, stained, strict=True))


def test_the_store_key_holds_the_augment_switch_and_not_the_budget():
    from ssl_lightning.config.settings import from_config

    def key(*overrides: str) -> str:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=[*CELL, "downstream=linear", "paths.cache=/tmp/unused", *overrides])
        return pretext_stage.pretext_key(from_config(cfg), [{"entry": "target", "target": True}])

    assert key() == key("data.fraction=0.05") == key("data.split_seed=3") == key("downstream=knn")
    assert key() != key(f"{NAME}.augment=false")
