"""Bad input is caught before training: one line on stderr, exit code 2, nothing written."""

from __future__ import annotations

import pytest


def _assert_clean_user_error(done, tmp_path, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "cache").glob("pretext/*/encoder.pt"))


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["+experiment=rotatoin"], ["unknown experiment 'rotatoin'", "rotation_jitter", "simclr"]),
        (["+experiment=rotation", "backbone=resnet99"], ["unknown backbone 'resnet99'", "resnet18"]),
        (["+experiment=rotation", "downstream=probe"], ["unknown downstream 'probe'", "finetune", "linear"]),
        (["+experiment=rotation", "downstream.protocol=probe"], ["unknown protocol 'probe'", "finetune"]),
        (["+experiment=rotation", "downstream.scheduler=linear"], ["downstream.scheduler='linear'", "cosine"]),
        (["+experiment=rotation", "trainer=gpu"], ["no CUDA GPU", "trainer=cpu"]),
        ([], ["no experiment chosen", "+experiment="]),
        (["+experiment=simclr", "pretext.batch_size=0"], ["pretext.batch_size=0", "whole number >= 1"]),
        (["+experiment=simclr", "simclr.temperature=0"], ["simclr.temperature=0", "> 0"]),
        (["+experiment=simclr", "simclr.grayscale_p=1.5"], ["simclr.grayscale_p=1.5", "[0, 1]"]),
        (["+experiment=simclr", "simclr.crop_min_scale=0"], ["simclr.crop_min_scale=0", "(0, 1]"]),
        (["+experiment=simclr", "simclr.jitter_strength=-1"], ["simclr.jitter_strength=-1", ">= 0"]),
        (["+experiment=rotation", "pretext.weight_decay=-0.1"], ["pretext.weight_decay=-0.1", ">= 0"]),
        (["+experiment=rotation", "pretext.momentum=1.5"], ["pretext.momentum=1.5", "[0, 1]"]),
        (["+experiment=rotation", "downstream.lr=0"], ["downstream.lr=0", "> 0"]),
        (["+experiment=rotation", "downstream.epochs=0"], ["downstream.epochs=0", ">= 1"]),
        (["+experiment=rotation", "data.eval_batch_size=0"], ["data.eval_batch_size=0", ">= 1"]),
        (["+experiment=rotation", "data.num_workers=-1"], ["data.num_workers=-1", ">= 0"]),
        (["+experiment=simclr", "pretext.batch_size=0", "simclr.temperature=-1"],
         ["pretext.batch_size=0", "simclr.temperature=-1"]),
        (["+experiment=rotation", "simclr.temperature=0.2"],
         ["simclr.temperature is a hyper-parameter of +experiment=simclr, not of rotation"]),
        (["+experiment=rotation", "trainer.limit_train_batches=2"],
         ["unknown config key 'trainer.limit_train_batches'", "did you mean pretext.limit_train_batches"]),
        (["+experiment=simclr", "simclr.temprature=0.1"], ["'simclr.temprature'", "did you mean simclr.temperature"]),
        (["+experiment=simclr", "trainer.zzz=1"], ["'trainer.zzz'", "valid keys under trainer", "devices"]),
    ],
)
def test_bad_names_and_settings(cli, tmp_path, overrides, fragments):
    done = cli(*overrides, "data=synthetic", "profile=smoke")
    _assert_clean_user_error(done, tmp_path, *fragments)
