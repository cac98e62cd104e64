"""What makes the comparison fair, through the CLI's entry function in-process (real Hydra, real Trainer): seeds,
early stopping, choices made on validation."""

from __future__ import annotations

import re

from tests.helpers import log_text, results_files

SMOKE = ("data=synthetic", "profile=smoke")


def test_same_seed_repeats_exactly_and_another_seed_differs(cli_in_process, tmp_path):
    first = cli_in_process("+experiment=supervised", *SMOKE, "data.fraction=0.5", "seed=3")
    assert first.returncode == 0, first.stderr[-3000:]
    (alone,) = results_files(tmp_path / "run")
    again = cli_in_process("+experiment=supervised", *SMOKE, "data.fraction=0.5", "seed=3,4", multirun=True)
    assert again.returncode == 0, again.stderr[-3000:]
    by_seed = {cell["seed"]: cell for cell in results_files(tmp_path / "multirun")}
    assert by_seed[3]["test_loss"] == alone["test_loss"]
    assert by_seed[4]["test_loss"] != alone["test_loss"]
    assert by_seed[4]["split_seed"] == 4 and alone["split_seed"] == 3  # each seed draws its own label split


def test_early_stopping_ends_a_plateau(cli_in_process, tmp_path):
    # A frozen encoder and a head that cannot move: validation accuracy is flat from the first epoch.
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream=linear", "downstream.solver=sgd",
                          "downstream.lr=1e-12", "downstream.epochs=10", "downstream.patience=2")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    assert cell["epochs"]["downstream"] == 3
    assert cell["best_epoch"] == 1
    assert cell["encoder"] == "random" and cell["batchnorm_reestimated_on"] > 0


CANDIDATE_SCORE = re.compile(r"downstream candidate lr=(\S+) probe_layer=(\S+): val_(\w+) ([\d.]+|nan)$", re.MULTILINE)


def test_learning_rate_and_probe_layer_are_chosen_on_validation(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream=linear", "downstream.solver=sgd",
                          "downstream.lr_grid=[1e-12,0.5]", "downstream.probe_layer=best")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    logs = log_text(tmp_path / "run")
    # every candidate's validation score as the cell's log records it, in the order they were fitted
    scores = [(float(lr), int(layer), monitor, float(score))
              for lr, layer, monitor, score in CANDIDATE_SCORE.findall(logs)]
    assert [(lr, layer) for lr, layer, _, _ in scores] == [(lr, layer) for layer in (1, 2, 3) for lr in (1e-12, 0.5)]
    assert {monitor for _, _, monitor, _ in scores} == {cell["monitor"]}
    # the tested candidate is the first with the best recorded score (a rule that kept the first candidate, or
    # the last, or ignored validation, picks another one on these scores)
    best = max(score for *_, score in scores)
    first_best = next((lr, layer) for lr, layer, _, score in scores if score == best)
    assert (cell["chosen_lr"], cell["probe_layer"]) == first_best
    assert round(cell["selection_score"], 4) == best
    if cell["monitor"] == "acc":
        assert round(cell["best_val_acc"], 4) == best
    # lr 1e-12 cannot move the head in a few steps: every such candidate keeps the random head's score, below the
    # best of the lr 0.5 ones, so the grid's choice is a real one
    assert max(score for lr, _, _, score in scores if lr == 1e-12) < best and cell["chosen_lr"] == 0.5
    assert f"chosen on validation: lr=0.5 probe_layer={cell['probe_layer']}" in logs


def test_bad_patience_is_one_line(cli_in_process):
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream.patience=0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "downstream.patience" in done.stderr
