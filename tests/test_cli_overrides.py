"""The command-line checks read overrides with Hydra's own parser: every form Hydra accepts for a group choice
(`a,b`, `choice(a,b)`, `[a,b]`, quoted) is checked against the config files, and a method hyper-parameter is routed
by the section Hydra parses, not by a pattern over the text."""

from __future__ import annotations

from pathlib import Path

import pytest

from ssl_lightning.cli.cli_checks import check_group_choices, route_method_overrides
from ssl_lightning.errors import UserError

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("arg", ["data=synthetic,cifar1O", "data=choice(synthetic,cifar1O)", "data='cifar1O'",
                                 "+data=[synthetic,cifar1O]", "++data=cifar1O"])
def test_every_form_of_a_misspelt_group_option_is_one_line(arg):
    with pytest.raises(UserError) as raised:
        check_group_choices(["-m", "+experiment=simclr", arg], CONF)
    message = str(raised.value)
    assert message.startswith("unknown data 'cifar1O'; valid: ") and "synthetic" in message and "\n" not in message


@pytest.mark.parametrize("argv", [["-m", "+experiment=simclr,rotation", "data=synthetic", "seed=range(0,3)"],
                                  ["+experiment=simclr", "data=null", "~profile", "hydra/launcher=basic"]])
def test_valid_choices_pass(argv):
    check_group_choices(argv, CONF)


def test_a_method_parameter_in_a_sweep_over_methods_is_added_where_absent():
    argv = ["-m", "+experiment=choice(simclr,rotation)", "simclr.temperature=0.1,0.2", "+simclr.extra=1",
            "seed=1"]
    assert route_method_overrides(argv, CONF) == ["-m", "+experiment=choice(simclr,rotation)",
                                                  "++simclr.temperature=0.1,0.2", "+simclr.extra=1", "seed=1"]


def test_the_last_experiment_choice_decides_and_an_unused_section_is_one_line():
    with pytest.raises(UserError, match=r"^simclr.temperature is a hyper-parameter of \+experiment=simclr, not of "
                                        r"rotation; drop it or choose that experiment$"):
        route_method_overrides(["+experiment=simclr", "+experiment=rotation", "simclr.temperature=0.2"], CONF)


def test_without_an_experiment_nothing_is_routed():
    argv = ["simclr.temperature=0.2", "seed=3"]
    assert route_method_overrides(argv, CONF) == argv
