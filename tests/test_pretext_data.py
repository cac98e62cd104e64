"""Pretext data apart from downstream data: unions with unlabelled folders, and initialised encoders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.imagefolder import load as load_imagefolder
from ssl_lightning.data.pretext_sources import assemble, load_sources, source_configs
from ssl_lightning.models.backbones import BackboneConfig, build_encoder
from tests.helpers import log_text, results_files


def _write_pngs(folder: Path, count: int, seed: int, gray: bool) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shape = (12, 12) if gray else (12, 12, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"img{i}.png")


def _image_tree(root: Path) -> None:
    for k, name in enumerate(("benign", "malignant")):
        for patient in range(2):
            _write_pngs(root / name / f"patient{patient}" / "x40", 10, seed=10 * k + patient, gray=False)
            _write_pngs(root / name / f"patient{patient}" / "x10", 3, seed=100 + 10 * k + patient, gray=False)


def test_union_with_an_unlabeled_folder_trains_once_and_keys_correctly(cli_in_process, tmp_path):
    _image_tree(tmp_path / "slides")
    _write_pngs(tmp_path / "kidney" / "case1", 15, seed=7, gray=True)  # grey: reconciled to RGB
    base = ["+experiment=rotation", "data=imagefolder", f"data.root={tmp_path / 'slides'}",
            "data.include=**/x40/*.png", "data.image_size=16", "profile=smoke",
            "data.group_by=none"]  # two patients per class: too few for a split by patient
    union = ["pretext_data=[target,unlabeled_folder]", f"pretext_data.unlabeled_folder.root={tmp_path / 'kidney'}"]
    done = cli_in_process(*base, *union, "data.fraction=0.5,1.0", multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = results_files(tmp_path / "multirun")
    assert [cell["status"] for cell in cells] == ["ok", "ok"]
    assert {cell["pretext_data"] for cell in cells} == {"target+unlabeled_folder"}
    assert len({cell["pretext_key"] for cell in cells}) == 1  # the fraction does not change the key
    logs = log_text(tmp_path / "multirun")
    assert logs.count("training pretext stage") == 1
    # the grid decodes each folder once (the target's slides and the kidney folder); the second cell maps both
    assert logs.count("images decoded in") == 2, logs
    assert logs.count("images reused") == 2, logs

    alone = cli_in_process(*base, "data.fraction=0.5")
    assert alone.returncode == 0, alone.stderr[-3000:]
    (target_only,) = results_files(tmp_path / "run")
    assert target_only["pretext_key"] != cells[0]["pretext_key"]  # other pretext data, other encoder


def test_test_images_of_the_same_data_set_never_reach_the_pretext_set(tmp_path):
    _image_tree(tmp_path / "slides")
    target_config = DataConfig(name="imagefolder", root=str(tmp_path / "slides"), include="**/x40/*.png",
                               image_size=16)
    target = load_imagefolder(target_config)
    split = make_label_split(target.train_labels.numpy(), 0.5, 0, 0.1, target.classes)
    same_again = {"target": {"name": "target"}, "slides": {"name": "imagefolder", "root": str(tmp_path / "slides"),
                                                            "include": "**/x40/*.png", "image_size": 16}}
    sources = source_configs(same_again, target_config)
    pretext = assemble(target, split.pool, split.val, sources, load_sources(sources), target.channels)

    def digest(image: torch.Tensor) -> str:
        return hashlib.sha1(image.numpy().tobytes()).hexdigest()

    pretext_hashes = {digest(image) for image in pretext.images[pretext.train_indices]}
    assert pretext_hashes.isdisjoint({digest(image) for image in target.test_images})
    assert pretext_hashes.isdisjoint({digest(image) for image in target.train_images[split.val]})
    assert len(pretext.train_indices) == len(split.pool)


def test_backbone_init_from_a_state_dict_file(cli_in_process, tmp_path):
    encoder = build_encoder(BackboneConfig(name="compact", width=8), in_channels=3, image_size=16)
    torch.nn.init.constant_(encoder.body[0].weight, 0.01)
    torch.save(encoder.state_dict(), tmp_path / "mine.pt")
    done = cli_in_process("+experiment=supervised", "data=synthetic", "profile=smoke",
                          f"backbone.init={tmp_path / 'mine.pt'}")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["status"] == "ok" and cell["init"] == str(tmp_path / "mine.pt")
    assert "backbone initialised from" in (tmp_path / "run" / "ssl_lightning.log").read_text()


def test_backbone_init_of_another_architecture_is_a_clear_error(cli_in_process, tmp_path):
    wider = build_encoder(BackboneConfig(name="compact", width=16), in_channels=3, image_size=16)
    torch.save(wider.state_dict(), tmp_path / "wide.pt")
    done = cli_in_process("+experiment=rotation", "data=synthetic", "profile=smoke",
                          f"backbone.init={tmp_path / 'wide.pt'}")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: weights from") and "do not fit backbone 'compact'" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "run").exists()


def test_backbone_init_torchvision_without_network_is_a_clear_error(cli_in_process, tmp_path):
    # Tests never reach the network: an unroutable proxy makes the download fail at once.
    offline = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
               "TORCH_HOME": str(tmp_path / "torch_home")}
    done = cli_in_process("+experiment=supervised", "data=synthetic", "profile=smoke", "backbone=resnet18",
                          "backbone.init=torchvision", env=offline)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "could not get torchvision's ImageNet weights" in done.stderr and "backbone.init=/path" in done.stderr
    assert "Traceback" not in done.stderr
