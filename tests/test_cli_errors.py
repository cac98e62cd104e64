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
    ],
)
def test_bad_names_and_settings(cli, tmp_path, overrides, fragments):
    done = cli(*overrides, "data=synthetic", "profile=smoke")
    _assert_clean_user_error(done, tmp_path, *fragments)
