"""Test metrics of a downstream run: balanced accuracy, macro-F1, confusion matrix and patient-level results.

The numbers come from the tested checkpoint's class probabilities through `ssl_lightning.evaluation.metrics`; these
tests recompute them independently (a fresh classifier loaded from the kept checkpoint, or the confusion matrix itself).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torchmetrics.classification import MulticlassAccuracy

from ssl_lightning.data.augment import to_unit_float
from ssl_lightning.evaluation.classifier import BalancedAccuracy, Classifier
from ssl_lightning.evaluation.metrics import balanced_accuracy, classification_metrics, confusion_matrix
from ssl_lightning.models.backbones import build_encoder
from ssl_lightning.stages import pipeline
from ssl_lightning.stages.downstream_stage import run_downstream
from tests.helpers import results_files, scalar_tags

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_validation_balanced_accuracy_averages_only_the_classes_with_images():
    """Class 2 has no validation image but is predicted once: torchmetrics' macro counts it with recall 0."""
    batches = [(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])), (torch.tensor([2, 1]), torch.tensor([0, 1]))]
    balanced, macro = BalancedAccuracy(3), MulticlassAccuracy(3, average="macro")
    for predicted, labels in batches:
        balanced.update(predicted, labels)
        macro.update(predicted, labels)
    predicted, labels = (torch.cat(parts) for parts in zip(*batches, strict=True))
    expected = balanced_accuracy(confusion_matrix(predicted, labels, 3))
    assert expected == pytest.approx((1 / 3 + 1) / 2)
    assert float(balanced.compute()) == pytest.approx(expected)
    assert float(macro.compute()) == pytest.approx((1 / 3 + 1 + 0) / 3)  # why torchmetrics' macro is not used


def _write_imbalanced_tree(root: Path, per_class: dict[str, int], size: int = 12) -> None:
    """Flat class folders; each class has its own mean colour plus noise, so a few steps learn something."""
    rng = np.random.default_rng(0)
    for index, (name, count) in enumerate(per_class.items()):
        (root / name).mkdir(parents=True)
        for k in range(count):
            base = np.array([60 + 70 * index, 180 - 50 * index, 120], dtype=np.int16)
            pixels = np.clip(base + rng.integers(-40, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:03d}.png")


def test_imbalanced_folder_cell_records_every_test_metric(cli_in_process, tmp_path):
    """End to end on a folder of 60 / 24 / 16 images: `auto` monitors balanced accuracy, results carry the metrics."""
    data_root = tmp_path / "tiles"
    _write_imbalanced_tree(data_root, {"benign": 60, "malignant": 24, "normal": 16})
    done = cli_in_process("+experiment=supervised", "data=imagefolder", f"data.root={data_root}", "data.image_size=12",
                          "profile=smoke", "downstream.epochs=2", "downstream.select=val")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["monitor"] == "balanced_acc" and cell["selected_on"] == "best_val_balanced_acc"
    assert cell["best_val_balanced_acc"] is not None and cell["best_val_acc"] is not None

    confusion = np.asarray(cell["test_confusion"])
    assert confusion.shape == (3, 3) and confusion.sum() == cell["num_test"]
    assert confusion.sum(axis=1).tolist() == [12, 5, 3]  # the stratified 20% test split, per class
    recall = np.diag(confusion) / confusion.sum(axis=1)
    assert list(cell["per_class_acc"].values()) == pytest.approx(recall.tolist())
    assert cell["test_acc"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert cell["test_balanced_acc"] == pytest.approx(recall.mean())
    precision_den, recall_den = confusion.sum(axis=0), confusion.sum(axis=1)
    f1 = 2 * np.diag(confusion) / (precision_den + recall_den)
    assert cell["test_macro_f1"] == pytest.approx(f1.mean())
    assert {"test_acc", "test_loss", "per_class_acc"} <= set(cell)

    tags = scalar_tags(Path(cell["_dir"]) / "tb" / "downstream")
    assert {"test/acc", "test/balanced_acc", "test/macro_f1", "test/loss", "downstream/val_balanced_acc"} <= tags


def test_grouped_test_split_gets_patient_level_metrics_from_the_tested_checkpoint(tmp_path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=supervised", "data=synthetic", "profile=smoke",
                                           f"paths.cache={tmp_path / 'cache'}"])
    cell = pipeline.prepare(cfg)
    images = cell.images
    groups = np.asarray([f"patient{k // 4:02d}" for k in range(len(images.test_labels))])  # 4 tiles per patient
    images.test_groups = groups
    run_dir = tmp_path / "run"
    outcome = run_downstream(cell.settings, cell.encoder, images, cell.split, tmp_path / "work", run_dir)

    # Independently: the kept checkpoint in a fresh classifier, one forward pass over the whole test split.
    fresh = Classifier(build_encoder(cell.settings.backbone, images.channels, images.image_size[0]),
                       images.num_classes, cell.settings.downstream.optim, 1)
    checkpoint = torch.load(outcome.best_epoch_checkpoint, map_location="cpu", weights_only=True)
    fresh.load_state_dict(checkpoint["state_dict"])
    fresh.eval()
    with torch.no_grad():
        probabilities = torch.softmax(fresh(to_unit_float(images.test_images)), dim=1)
    expected = classification_metrics(probabilities, images.test_labels, images.num_classes, groups)

    got = outcome.metrics
    assert got.confusion == expected.confusion and got.num_groups == expected.num_groups == 32
    for name in ("acc", "balanced_acc", "macro_f1", "group_acc", "group_balanced_acc"):
        assert getattr(got, name) == pytest.approx(getattr(expected, name), abs=1e-9), name
    results = outcome.as_results(images.classes)
    assert {"test_group_acc", "test_group_balanced_acc", "test_num_groups", "test_confusion"} <= set(results)
    assert {"test/group_acc", "test/group_balanced_acc"} <= scalar_tags(run_dir / "tb" / "downstream")
