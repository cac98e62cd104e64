"""Logs a person can read anywhere: one line per epoch and stage when stdout is not a terminal, no tips."""

from __future__ import annotations

import re
import sys

import pytest
from pytorch_lightning.callbacks import TQDMProgressBar

from ssl_lightning.config.settings import TrainerSettings
from ssl_lightning.training.epoch_log import EpochLine
from ssl_lightning.training.trainer_factory import build_trainer
from tests.helpers import cell_log, shared_cells

NUMBER = r"[0-9.]+"
LINE = (rf"(pretext|downstream) epoch (\d+)/(\d+): train_loss={NUMBER} train_acc={NUMBER}% val_loss={NUMBER} "
        rf"val_acc={NUMBER}%(?: val_balanced_acc={NUMBER}%)?(?: val_knn_acc={NUMBER}% val_rankme={NUMBER})? "
        rf"\| [0-9,]+ img/s \| {NUMBER} s$")


def test_captured_stdout_gets_one_line_per_epoch_and_no_bar_or_tips(shared_sweep):
    """The shared sweep's first grid (tests/conftest.py) allows the bar (trainer.enable_progress_bar=true) and trains
    2 epochs per stage; its stdout is a pipe, not a terminal."""
    done = shared_sweep["grid"]
    assert done["returncode"] == 0, done["stderr"][-3000:]
    output = done["stdout"] + done["stderr"]
    assert "\r" not in output and "it/s]" not in output
    assert "Tip:" not in output and "litlogger" not in output and "litmodels" not in output
    expected_in_stdout = []
    for cell in shared_cells(shared_sweep, ("rotation", "simclr", "supervised")):
        trained_pretext = cell["pretext_key"] is not None and not cell["pretext_reused"]
        expected = [*([("pretext", 1, 2), ("pretext", 2, 2)] if trained_pretext else []),
                    ("downstream", 1, 2), ("downstream", 2, 2)]
        logged = [(m[1], int(m[2]), int(m[3])) for m in re.finditer(LINE, cell_log(cell), re.MULTILINE)]
        assert logged == expected, cell["_dir"]
        expected_in_stdout += expected
    lines = [re.search(LINE, line) for line in done["stdout"].splitlines()]
    assert [(m[1], int(m[2]), int(m[3])) for m in lines if m] == expected_in_stdout


class _Terminal:
    """A stdout that says it is a terminal."""

    def __init__(self, stream):
        self._stream = stream

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name):
        return getattr(self._stream, name)


@pytest.mark.parametrize(("terminal", "allowed", "bar"), [(True, True, True), (True, False, False),
                                                          (False, True, False)])
def test_bar_only_on_a_terminal_when_allowed(terminal, allowed, bar, tmp_path, monkeypatch):
    if terminal:
        monkeypatch.setattr(sys, "stdout", _Terminal(sys.stdout))
    trainer = build_trainer(TrainerSettings(enable_progress_bar=allowed), 1, tmp_path, "pretext", [], 1.0, 1.0,
                            tmp_path)
    assert isinstance(trainer.progress_bar_callback, TQDMProgressBar) == bar
    assert any(isinstance(c, EpochLine) for c in trainer.callbacks) == (not bar)
