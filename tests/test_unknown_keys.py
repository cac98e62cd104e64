"""Unknown config keys are caught before Hydra runs: one line naming the closest valid keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_lightning.cli.cli_checks import group_options
from ssl_lightning.cli.unknown_keys import check_known_keys
from ssl_lightning.errors import UserError

CONF = Path(__file__).resolve().parent.parent / "conf"


def _check(*argv: str, conf: Path = CONF) -> None:
    check_known_keys(list(argv), conf, set(group_options(conf)))


def test_known_keys_sweeps_groups_lists_and_additions_pass():
    _check("-m", "+experiment=rotation,simclr", "data.fraction=0.05,0.25", "seed=range(3)", "profile=smoke",
           "pretext_data=[target,unlabeled_folder]", "pretext_data.unlabeled_folder.root=/x", "hydra.run.dir=/tmp",
           "hydra/launcher=parallel", "hydra.launcher.n_jobs=2", "+extra.key=1", "data=synthetic",
           "data.train_size=64", "downstream=linear", "simclr.temperature=0.2")


@pytest.mark.parametrize(("argv", "fragments"), [
    (["+experiment=simclr", "trainer.limit_train_batches=2"],
     ["'trainer.limit_train_batches'", "did you mean pretext.limit_train_batches or downstream.limit_train_batches"]),
    (["+experiment=simclr", "pretext.batchsize=2"], ["did you mean pretext.batch_size?"]),
    (["+experiment=simclr", "data.train_size=64"], ["'data.train_size'"]),  # synthetic only
    (["+experiment=simclr", "nonsense=1"], ["valid top-level keys:", "pretext", "downstream"]),
])
def test_unknown_keys_are_one_line_with_suggestions(argv, fragments):
    with pytest.raises(UserError) as caught:
        _check(*argv)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("unknown config key")
    for fragment in fragments:
        assert fragment in message


def test_a_key_that_only_one_swept_choice_defines_passes(tmp_path):
    (tmp_path / "method").mkdir()
    (tmp_path / "config.yaml").write_text("defaults:\n  - _self_\n  - method: a\nlr: 0.1\n")
    (tmp_path / "method" / "a.yaml").write_text("# @package _global_\na_section:\n  momentum: 0.9\n")
    (tmp_path / "method" / "b.yaml").write_text("# @package _global_\nb_section:\n  temperature: 0.1\n")
    _check("method=a,b", "b_section.temperature=0.2", conf=tmp_path)
    with pytest.raises(UserError, match="did you mean b_section.temperature"):
        _check("method=a,b", "b_section.temprature=0.2", conf=tmp_path)
