"""backbone=timm: any timm model as the encoder, weights read from disk only (issue 31).

Tiny ViTs (2 blocks, 48-d) built from random initialisation and saved by the tests: the network is never touched.
Every pretext method trains on one (no BatchNorm assumption in a head or monitor), the probes cut it at its
blocks, and saved weights (state dict, .safetensors, timm model folder) come back exactly.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import save_for_hf

from ssl_lightning.errors import UserError
from ssl_lightning.methods import registry
from ssl_lightning.models.backbones import BackboneConfig, check_backbone
from ssl_lightning.models.init import build_initialised
from ssl_lightning.models.probe import stage_count, truncated
from tests.methods.lightning_kit import constant_sgd, fit, pretext_data, synthetic_images

MODEL = "vit_tiny_patch16_224"
TINY = {"depth": 2, "embed_dim": 48, "num_heads": 3}


def _vit(size: int, channels: int = 3, patch: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(MODEL, pretrained=False, num_classes=0, img_size=size, patch_size=patch,
                             in_chans=channels, **TINY)


def _config(**values) -> BackboneConfig:
    return BackboneConfig(**{"name": "timm", "model": MODEL, "kwargs": TINY, **values})


@pytest.mark.parametrize("size,patch", [(16, 4), (28, 4), (64, 8), (96, 8), (224, 16)])
def test_random_vit_patch_fits_the_image(size, patch):
    with torch.device("meta"):
        encoder = build_initialised(_config(), 1, size)
    assert encoder.body.patch_embed.proj.weight.shape == (48, 1, patch, patch)
    assert encoder.contract.stem == f"patch{patch}" and encoder.contract.is_identity()  # the suite's [-1, 1]
    assert encoder.feature_dim == 48 and stage_count(encoder) == 2


def test_saved_weights_come_back_exactly_with_their_contract(tmp_path):
    from safetensors.torch import save_file

    vit = _vit(28)
    state = vit.state_dict()
    torch.save(state, tmp_path / "vit.pth")
    save_file(state, str(tmp_path / "vit.safetensors"))
    save_for_hf(vit, str(tmp_path / "folder"), safe_serialization=True)
    images = torch.rand(2, 1, 28, 28) * 2 - 1
    vit.eval()
    expected = vit(images.expand(-1, 3, -1, -1) * 1.0)  # timm's vit_tiny mean/std 0.5: exactly [-1, 1]
    for init, kwargs in ((tmp_path / "vit.pth", TINY), (tmp_path / "vit.safetensors", TINY),
                         (tmp_path / "folder", {})):  # the folder's config.json names the model and its size
        config = BackboneConfig(name="timm", init=str(init), kwargs=kwargs,
                                model=MODEL if kwargs else None)
        encoder = build_initialised(config, 1, 28).eval()
        for key, value in state.items():
            assert torch.equal(encoder.body.state_dict()[key], value), (init, key)
        assert encoder.contract.record()["grey_to_rgb"] == "repeated to 3 channels"
        assert encoder.contract.record()["mean"] == [0.5, 0.5, 0.5]
        assert torch.allclose(encoder(images), expected, atol=1e-5)
    # weights trained at 28 px, data at 16 px: resized up to the weights' size, never a resampled grid
    small = build_initialised(_config(init=str(tmp_path / "vit.pth")), 1, 16)
    assert small.contract.resize_to == 28 and small(torch.zeros(2, 1, 16, 16)).shape == (2, 48)


def test_probe_cut_points_are_the_blocks():
    encoder = build_initialised(_config(), 3, 16)
    first = truncated(encoder, 1)
    assert first.feature_dim == 48 and first(torch.rand(2, 3, 16, 16)).shape == (2, 48)
    assert truncated(encoder, 2) is encoder
    with pytest.raises(UserError, match="1..2"):
        truncated(encoder, 3)


# every registered method that trains on images alone (one trained on the pool's labels needs labelled batches)
@pytest.mark.parametrize("method", [name for name, spec in registry.methods().items() if not spec.needs_labels])
def test_every_pretext_method_trains_a_vit(method, tmp_path):
    torch.manual_seed(0)
    encoder = build_initialised(_config(), 3, 16)
    before = [p.detach().clone() for p in encoder.parameters()]
    spec = registry.get(method)
    module = spec.build(encoder, constant_sgd(0.05), 1, spec.parse({}))
    losses = fit(module, pretext_data(synthetic_images(train_size=64), 16), 2, str(tmp_path), validate_every=2)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))


@pytest.mark.parametrize("values,match", [
    ({"init": "hf-hub:MahmoodLab/UNI"}, "nothing is downloaded"),
    ({"init": "timm"}, "nothing is downloaded"),
    ({"model": None}, "backbone.model="),
    ({"model": "vit_no_such_model"}, "not a timm model"),
    ({"init": "/no/such/weights.safetensors"}, "does not exist"),
    ({"patch_size": 5}, "does not divide"),
    ({"init": "torchvision"}, "local weights"),
    ({"input_size": 0}, "backbone.input_size"),
])
def test_bad_values_are_one_user_error_before_training(values, match, tmp_path):
    with pytest.raises(UserError, match=match) as error:
        config = _config(**values)
        check_backbone("simclr", config)
        build_initialised(config, 3, 28)
    assert "\n" not in str(error.value)


def test_a_folder_without_weights_or_with_a_broken_config_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="without weights"):
        build_initialised(_config(init=str(tmp_path / "empty")), 3, 28)
    folder = tmp_path / "broken"
    save_for_hf(_vit(28), str(folder), safe_serialization=True)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json"):
        build_initialised(_config(init=str(folder)), 3, 28)
    mismatch = tmp_path / "other.pth"
    torch.save(_vit(28, patch=7).state_dict(), mismatch)
    with pytest.raises(UserError, match="differs from the 7 px patches"):
        build_initialised(_config(init=str(mismatch), patch_size=4), 3, 28)
    wider = tmp_path / "wider.pth"
    torch.save(timm.create_model(MODEL, pretrained=False, num_classes=0, img_size=28, patch_size=4,
                                 **{**TINY, "depth": 3}).state_dict(), wider)
    with pytest.raises(UserError, match="do not fit"):  # a block more than backbone.kwargs builds
        build_initialised(_config(init=str(wider)), 3, 28)
