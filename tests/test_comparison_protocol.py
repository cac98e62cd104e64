"""What makes the comparison fair, through the CLI's entry function in-process (real Hydra, real Trainer): seeds,
early stopping, choices made on validation."""

from __future__ import annotations

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


def test_learning_rate_and_probe_layer_are_chosen_on_validation(cli_in_process, tmp_path):
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream=linear", "downstream.solver=sgd",
                          "downstream.lr_grid=[1e-12,0.5]", "downstream.probe_layer=best")
    assert done.returncode == 0, done.stderr[-3000:]
    (cell,) = results_files(tmp_path / "run")
    # lr 1e-12 cannot move the head in a few steps (it keeps the random head's score): working selection picks 0.5,
    # a rule that kept the first candidate (or ignored validation) would pick 1e-12
    assert cell["chosen_lr"] == 0.5 and cell["best_val_acc"] > 0.25
    assert cell["probe_layer"] in (1, 2, 3)
    assert f"chosen on validation: lr=0.5 probe_layer={cell['probe_layer']}" in log_text(tmp_path / "run")
    logs = log_text(tmp_path / "run")
    assert logs.count("downstream candidate") == 6  # 2 learning rates x 3 stages of the compact encoder
    assert "chosen on validation" in logs


def test_bad_patience_is_one_line(cli_in_process):
    done = cli_in_process("+experiment=supervised", *SMOKE, "downstream.patience=0")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "downstream.patience" in done.stderr
