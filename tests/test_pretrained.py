"""Weights carry their input contract, and `+experiment=pretrained` probes them as they are (issue 31).

A torchvision ResNet-18 state dict at 28 px keeps its ImageNet stem (the file's 7x7 conv1, max-pool), is fed
ImageNet mean/std-normalised RGB resized to 64 px, and the run's exported encoder holds the file's conv1; a stem
that would discard the loaded conv1 is refused in one line unless asked for; `pretrained` without weights is one
line, exit 2. No network: the weights are a randomly initialised torchvision model saved by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from hydra import compose, initialize_config_dir

from ssl_lightning.errors import UserError
from ssl_lightning.export.encoders import main as export_main
from ssl_lightning.models.input_contract import IMAGENET_MEAN, IMAGENET_STD
from ssl_lightning.record import RunRecord
from ssl_lightning.report.columns import label, variant
from ssl_lightning.stages import pipeline
from tests.conftest import call_main

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ("data=synthetic", "profile=smoke", "data.image_size=28", "data.channels=1", "data.train_size=96",
        "data.test_size=32")


@pytest.fixture
def resnet_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()  # ImageNet's layout, random values
    path = tmp_path / "weights" / "resnet18_imagenet.pt"
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


def _prepared(tmp_path: Path, *overrides: str) -> pipeline.PreparedCell:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=pretrained", *TINY, "backbone=resnet18", "downstream=knn",
                                           f"paths.cache={tmp_path / 'cache'}", *overrides])
    return pipeline.prepare(cfg)


def test_loaded_stem_wins_and_a_discarding_stem_must_be_asked_for(tmp_path, resnet_file):
    path, state = resnet_file
    encoder = _prepared(tmp_path, f"backbone.init={path}").encoder
    assert torch.equal(encoder.body.conv1.weight, state["conv1.weight"])  # 7x7, 3 channels: the file's
    assert not isinstance(encoder.body.maxpool, torch.nn.Identity)
    contract = encoder.contract.record()
    assert contract == {"stem": "imagenet", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                        "resize_to": 64, "grey_to_rgb": "repeated to 3 channels"}
    # what the body sees: grey repeated, 64 px, ImageNet statistics
    seen = []
    encoder.body.conv1.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    encoder.eval()(torch.zeros(1, 1, 28, 28))  # [-1, 1] scale: 0 is mid-grey (0.5)
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert seen[0].shape == (1, 3, 64, 64)
    assert torch.allclose(seen[0][0, :, 10, 10], expected, atol=1e-6)

    with pytest.raises(UserError, match="discard_loaded_stem=true"):
        _prepared(tmp_path, f"backbone.init={path}", "backbone.stem=cifar")
    discarded = _prepared(tmp_path, f"backbone.init={path}", "backbone.stem=cifar",
                          "backbone.discard_loaded_stem=true").encoder
    assert discarded.body.conv1.weight.shape == (64, 1, 3, 3)
    assert torch.equal(discarded.body.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def test_the_default_path_is_unchanged(tmp_path):
    """Random init: no adapter at work, the CIFAR stem at 28 px, the encoder's name (feature-store key) as before."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["+experiment=supervised", *TINY, "backbone=resnet18", "downstream=knn",
                                           f"paths.cache={tmp_path / 'cache'}"])
    encoder = pipeline.prepare(cfg).encoder
    assert encoder.name == "resnet18" and not encoder.adapter.active
    assert encoder.body.conv1.weight.shape == (64, 1, 3, 3)
    images = torch.rand(2, 1, 28, 28)
    assert encoder.adapter(images) is images


def test_pretrained_arm_keeps_the_files_conv1_through_export(cli_in_process, tmp_path, resnet_file):
    path, state = resnet_file
    done = cli_in_process("+experiment=pretrained", *TINY, "backbone=resnet18", f"backbone.init={path}",
                          "downstream=linear", "downstream.solver=sgd")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "ok" and results["experiment"] == "pretrained"
    assert results["pretext_key"] is None and results["encoder"] == "pretrained"
    assert results["input_contract"]["stem"] == "imagenet" and results["input_contract"]["resize_to"] == 64
    exported = call_main(export_main, [str(run)], tmp_path)
    assert exported.returncode == 0, exported.stderr
    encoder = torch.load(run / "export" / "classifier_run" / "encoder.pt", weights_only=True)
    assert torch.equal(encoder["conv1.weight"], state["conv1.weight"])  # the frozen probe left it as it was
    assert torch.equal(encoder["layer4.1.conv2.weight"], state["layer4.1.conv2.weight"])

    record = RunRecord.from_json(results)  # the report's column is named after the weights
    assert label("pretrained", variant(record)) == "Pretrained (resnet18, resnet18_imagenet.pt)"


def test_pretrained_without_weights_is_one_line(cli_in_process):
    done = cli_in_process("+experiment=pretrained", "data=synthetic", "profile=smoke", "backbone=resnet18")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "backbone.init=" in lines[0] and "pretrained" in lines[0]


def test_timm_vit_trains_dino_and_simclr_cells_and_serves_pretrained(cli_in_process, tmp_path):
    """One sweep: DINO and SimCLR smoke cells on a tiny ViT starting from a saved timm folder, and `pretrained`
    probing that folder as it is (k-NN on cached features); its column is named after the model."""
    import timm
    from timm.models import save_for_hf

    from tests.helpers import results_files

    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=16, patch_size=4,
                            depth=2, embed_dim=48, num_heads=3)
    save_for_hf(vit, str(tmp_path / "tiny_vit"), safe_serialization=True)
    done = cli_in_process("+experiment=dino,simclr,pretrained", "data=synthetic", "profile=smoke",
                          "data.train_size=96", "data.test_size=32", "backbone=timm",
                          f"backbone.init={tmp_path / 'tiny_vit'}", "downstream=knn", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = {cell["experiment"]: cell for cell in results_files(tmp_path)}
    assert set(cells) == {"dino", "simclr", "pretrained"}
    assert all(cell["status"] == "ok" for cell in cells.values()), [c.get("error") for c in cells.values()]
    assert cells["pretrained"]["pretext_key"] is None and cells["dino"]["pretext_key"]
    assert cells["pretrained"]["input_contract"]["stem"] == "patch4"
    record = RunRecord.from_json({k: v for k, v in cells["pretrained"].items() if k != "_dir"})
    assert label("pretrained", variant(record)) == "Pretrained (vit_tiny_patch16_224, tiny_vit)"
