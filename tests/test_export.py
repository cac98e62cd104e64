"""`python -m ssl_lightning.export`: plain state dicts that load into torchvision and back via backbone.init."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

from ssl_lightning.export.encoders import main as export_main
from ssl_lightning.export.encoders import strip_prefix, write_encoder
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from ssl_lightning.models.init import apply_init
from tests.conftest import call_main


def _export(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m ssl_lightning.export ...` through its main(argv), in this process."""
    return call_main(export_main, list(args), cwd)


def _run_snippet(card: dict, folder: Path, monkeypatch) -> dict:
    """Execute the card's load snippet in the export folder, as a user would paste it."""
    monkeypatch.chdir(folder)
    namespace: dict = {}
    exec("\n".join(card["load"]), namespace)  # noqa: S102 - the text we ship to users must run
    return namespace


def test_run_export_loads_into_torchvision_and_back_via_backbone_init(cli_in_process, tmp_path, monkeypatch):
    done = cli_in_process("+experiment=simclr", "data=synthetic", "profile=smoke", "backbone=resnet18")
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    exported = _export(str(run), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr

    pretext_dir = run / "export" / f"pretext_{results['pretext_key']}"
    classifier_dir = run / "export" / "classifier_run"
    store_state = torch.load(tmp_path / "cache" / "pretext" / results["pretext_key"] / "encoder.pt",
                             weights_only=True)
    for folder in (pretext_dir, classifier_dir):
        card = json.loads((folder / "card.json").read_text())
        assert card["backbone"] == "resnet18" and card["stem"] == "cifar" and card["in_channels"] == 3
        assert card["store_key"] == results["pretext_key"] and card["seed"] == 0 and card["data"] == "synthetic"
        assert card["git_commit"] == results["git_commit"] and card["init"] == "random"
        assert card["pretext_data"] == "target" and card["method"] == "simclr"
        state = torch.load(folder / "encoder.pt", weights_only=True)
        assert not any(key.startswith(("body.", "encoder.", "head.")) for key in state)

        model = torchvision.models.resnet18()
        model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = torch.nn.Identity()
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []

        # the card's own snippet does the same
        snippet = _run_snippet(card, folder, monkeypatch)
        assert sorted(snippet["missing"]) == ["fc.bias", "fc.weight"] and snippet["unexpected"] == []

        # backbone.init=<exported file> reads it back, every tensor equal
        encoder = build_encoder(BackboneConfig(name="resnet18", stem="cifar"), 3, 16)
        apply_init(encoder, str(folder / "encoder.pt"))
        for key, value in state.items():
            assert torch.equal(encoder.state_dict()[f"body.{key}"], value), key

    pretext_state = torch.load(pretext_dir / "encoder.pt", weights_only=True)
    assert len(pretext_state) == len(store_state)
    assert all(torch.equal(store_state[f"body.{key}"], value) for key, value in pretext_state.items())
    classifier = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(torch.load(classifier_dir / "encoder.pt", weights_only=True)["layer1.0.conv1.weight"],
                       classifier["encoder.body.layer1.0.conv1.weight"])

    # and through the CLI: a supervised run starting from the exported pretext encoder
    monkeypatch.chdir(tmp_path)
    again = cli_in_process("+experiment=supervised", "data=synthetic", "profile=smoke", "backbone=resnet18",
                           f"backbone.init={pretext_dir / 'encoder.pt'}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "backbone initialised from" in (run / "ssl_lightning.log").read_text()


def test_store_key_export_and_bad_sources(cli_in_process, tmp_path):
    assert cli_in_process("+experiment=rotation", "data=synthetic", "profile=smoke").returncode == 0
    key = json.loads((tmp_path / "run" / "results.json").read_text())["pretext_key"]
    done = _export(key, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "out" / f"pretext_{key}" / "card.json").read_text())
    assert card["method"] == "rotation" and card["backbone"] == "compact" and card["store_key"] == key
    assert card["backbone_config"]["width"] == 8 and card["seed"] == 0 and card["data"] == "synthetic"
    for args in (["0123456789abcdef", "--cache", str(tmp_path / "cache")], [str(tmp_path / "nowhere")]):
        bad = _export(*args, cwd=tmp_path)
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), bad.stderr


@pytest.mark.parametrize(("config", "channels"), [
    (BackboneConfig(name="compact", width=8, blocks=2, stem_stride=1), 1),
    (BackboneConfig(name="resnet18", stem="imagenet"), 1),
    (BackboneConfig(name="resnet50", stem="cifar"), 3),
])
def test_card_snippet_rebuilds_every_backbone(config, channels, tmp_path, monkeypatch):
    encoder = build_encoder(config, channels, 32)
    state = strip_prefix(encoder.state_dict(), "body.")
    exported = write_encoder(state, tmp_path / "enc", {"backbone_config": {
        k: getattr(config, k) for k in ("name", "width", "blocks", "stem_stride")}})
    assert exported.card["feature_dim"] == encoder.feature_dim and exported.card["in_channels"] == channels
    namespace = _run_snippet(exported.card, tmp_path / "enc", monkeypatch)
    rebuilt = namespace.get("encoder") or namespace["model"]
    images = torch.rand(2, channels, 32, 32) * 2 - 1
    encoder.eval()
    rebuilt.eval()
    with torch.no_grad():
        assert torch.allclose(rebuilt(images), encoder(images), atol=1e-5)
