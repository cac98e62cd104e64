"""The downstream classifier: what each protocol may train, and loading a pretext encoder into it.

The linear protocol is only a fair evaluation of a pretext encoder if nothing in the encoder moves, including
BatchNorm running statistics, which change in a plain forward pass in train mode without any gradient.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from ssl_lightning.errors import UserError
from ssl_lightning.evaluation.classifier import Classifier
from ssl_lightning.methods.rotation import RotationPretext
from ssl_lightning.methods.simclr import SimCLRPretext
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.models.encoder_state import load_encoder_weights, read_state_file
from tests.methods.lightning_kit import (
    IMAGE_SIZE,
    compact_encoder,
    constant_sgd,
    downstream_data,
    fit,
    pretext_data,
    state_copy,
    synthetic_images,
)

STEPS = 6


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def train_classifier(protocol: str, root: Path) -> tuple[Classifier, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A few real Trainer steps with validation in between (Lightning switches modes around it).

    Returns the module and its encoder and head state before training.
    """
    pl.seed_everything(0, verbose=False)
    images = synthetic_images(channels=3, train_size=128)
    module = Classifier(compact_encoder(3), images.num_classes, constant_sgd(0.1), epochs=1, protocol=protocol)
    encoder_before, head_before = state_copy(module.encoder), state_copy(module.head)
    fit(module, downstream_data(images, batch_size=32), STEPS, str(root), validate_every=2)
    return module, encoder_before, head_before


def test_linear_protocol_freezes_encoder_weights_and_batchnorm_statistics(tmp_path: Path) -> None:
    module, encoder_before, head_before = train_classifier("linear", tmp_path)
    encoder_after = state_copy(module.encoder)
    assert any("running_mean" in name for name in encoder_before), "the encoder must have BatchNorm buffers"
    assert changed(encoder_before, encoder_after) == set(), "linear protocol moved encoder weights or BN buffers"
    assert changed(head_before, state_copy(module.head)) == set(head_before), "the head must train"
    assert not any(p.requires_grad for p in module.encoder.parameters())


def test_linear_protocol_keeps_the_encoder_in_eval_mode_when_lightning_switches_to_train() -> None:
    module = Classifier(compact_encoder(3), 4, constant_sgd(0.1), epochs=1, protocol="linear")
    module.train()
    assert module.training and module.head.training
    assert not any(m.training for m in module.encoder.modules())


def test_finetune_protocol_trains_encoder_weights_and_statistics(tmp_path: Path) -> None:
    module, encoder_before, head_before = train_classifier("finetune", tmp_path)
    moved = changed(encoder_before, state_copy(module.encoder))
    weights = {name for name, _ in module.encoder.named_parameters()}
    assert weights <= moved, f"encoder weights that did not train: {sorted(weights - moved)}"
    assert any("running_mean" in name for name in moved), "BatchNorm statistics must update when fine-tuning"
    assert changed(head_before, state_copy(module.head)) == set(head_before)


@pytest.mark.parametrize("method", ["rotation", "simclr"])
def test_pretext_encoder_checkpoint_loads_into_the_classifier(method: str, tmp_path: Path) -> None:
    """Train a pretext encoder for real, save its state dict as the store does, load it downstream."""
    pl.seed_everything(1, verbose=False)
    images = synthetic_images(channels=3, train_size=128)
    encoder = compact_encoder(3)
    initial = state_copy(encoder)
    if method == "rotation":
        pretext = RotationPretext(encoder, constant_sgd(0.05), epochs=1)
    else:
        pretext = SimCLRPretext(encoder, constant_sgd(0.05), epochs=1, proj_dim=16, proj_hidden_dim=32)
    fit(pretext, pretext_data(images, batch_size=32), 2, str(tmp_path))
    trained = state_copy(pretext.encoder)
    assert changed(initial, trained), "the pretext stage must have changed the encoder"
    path = tmp_path / "encoder.pt"
    torch.save({k: v.detach().cpu() for k, v in pretext.encoder.state_dict().items()}, path)

    classifier = Classifier(compact_encoder(3), images.num_classes, constant_sgd(0.1), epochs=1, protocol="linear")
    load_encoder_weights(classifier.encoder, read_state_file(path), f"file {path}")
    assert changed(trained, state_copy(classifier.encoder)) == set()
    assert not any(name.startswith(("head", "projector")) for name in trained), "no pretext head is carried over"


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (BackboneConfig(name="compact", width=16), r"compact.*3 input channel.*another shape"),
        (BackboneConfig(name="compact", width=8, blocks=2), r"compact.*missing"),
        (BackboneConfig(name="resnet18"), r"resnet18.*(missing|unexpected)"),
    ],
    ids=["width", "depth", "architecture"],
)
def test_mismatched_backbone_is_a_user_error(target: BackboneConfig, expected: str) -> None:
    saved = compact_encoder(3, width=8).state_dict()
    classifier_encoder = build_encoder(target, 3, IMAGE_SIZE)
    with pytest.raises(UserError, match=expected) as error:
        load_encoder_weights(classifier_encoder, saved, "pretext store entry abc")
    assert "pretext store entry abc" in str(error.value)
    assert "\n" not in str(error.value), "user errors are reported as one line"


def test_mismatched_channel_count_is_a_user_error_naming_the_channels() -> None:
    saved = compact_encoder(1).state_dict()
    rgb_encoder = compact_encoder(3)
    before = state_copy(rgb_encoder)
    with pytest.raises(UserError, match=r"3 input channel") as error:
        load_encoder_weights(rgb_encoder, saved, "grey.pt")
    message = str(error.value)
    assert "grey.pt" in message and "(8, 1, 3, 3)" in message and "(8, 3, 3, 3)" in message
    assert changed(before, state_copy(rgb_encoder)) == set(), "a refused load must not change the encoder"


def test_unreadable_or_non_tensor_files_are_user_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(UserError, match="does not exist"):
        read_state_file(missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights"):
        read_state_file(garbage)
    wrong = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], wrong)
    with pytest.raises(UserError, match="state dict"):
        read_state_file(wrong)
