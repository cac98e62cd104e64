"""The table of value rules: every shipped config passes, broken values and new methods' sections are caught."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssl_lightning.config.validation import check_values, problems, rule_for
from ssl_lightning.errors import UserError

CONF = Path(__file__).resolve().parent.parent / "conf"


@pytest.mark.parametrize("profile", ["cpu", "paper", "smoke"])
@pytest.mark.parametrize("experiment", ["rotation", "rotation_jitter", "simclr", "supervised"])
def test_every_shipped_config_passes(experiment, profile):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for extra in ([], ["data=synthetic", "downstream=linear", "trainer=ddp", "backbone=resnet18"]):
            config = compose("config", overrides=[f"+experiment={experiment}", f"profile={profile}", *extra])
            OmegaConf.set_struct(config, False)
            config.pop("paths")  # needs Hydra's runtime resolver; not a number anyway
            values = OmegaConf.to_container(config, resolve=True)
            assert problems(values) == []


@pytest.mark.parametrize(
    ("key", "bad", "good"),
    [
        ("pretext.batch_size", 0, 32), ("downstream.batch_size", 2.5, 64), ("data.eval_batch_size", -1, 512),
        ("pretext.epochs", 0, 1), ("pretext.warmup_epochs", -1, 0), ("simclr.temperature", 0, 0.1),
        ("pretext.lr", 0.0, 0.1), ("downstream.weight_decay", -1e-4, 0.0), ("data.fraction", 0, 1.0),
        ("data.val_split", 1.0, 0.0), ("simclr.crop_min_scale", 1.5, 1.0), ("simclr.grayscale_p", -0.1, 0.0),
        ("rotation.jitter_strength", -0.5, 0.0), ("data.num_workers", -1, 0), ("seed", -1, 0),
        ("pretext.step_milestones", [0.6, 0.3], [0.3, 0.6]), ("pretext.limit_train_batches", 2.5, 3),
        ("simclr.temperature", "abc", 0.5), ("pretext.batch_size", True, 8), ("pretext.lr", float("nan"), 1e-3),
        # every method's section is checked by the ranges its Params fields declare
        ("byol.base_momentum", 1.01, 0.996), ("moco.temperature", 0, 0.2), ("dino.teacher_temperature", 0, 0.04),
        ("barlow_twins.proj_dim", 0, 2048), ("barlow_twins.lambd", -1, 0.005), ("moco.queue_size", -1, 4096),
        ("dino.local_crop_max_scale", 1.2, 1.0), ("dino.warmup_teacher_temperature", 0, 0.04),
        ("downstream.patience", 0, 5), ("moco.blur_p1", 1.5, 0.1), ("byol.blur_p2", 1.5, 0.1),
        ("dino.local_crops", -1, 0), ("dino.local_size_fraction", 0, 0.43), ("dino.teacher_temperature_warmup", -1, 0),
        ("dino.grayscale_p", -1, 0.2), ("trainer.channels_last", "maybe", "auto"),
        # the method's own range, not a rule matched by name: Barlow Twins needs lambd > 0, DINO's warm-up is a share
        ("barlow_twins.lambd", 0, 0.005), ("dino.teacher_temperature_warmup", 1.5, 1.0),
        ("fixmatch.lambda_u", -1, 0.0), ("downstream.k", 0, 10),
        ("trainer.channels_last", 1, True), ("trainer.threads", 0, "auto"), ("trainer.threads", "abc", 2),
    ],
)
def test_bad_values_are_named_with_their_range_and_good_ones_pass(key, bad, good):
    section, _, name = key.rpartition(".")

    def config(value):
        return {section: {name: value}} if section else {name: value}

    with pytest.raises(UserError) as caught:
        check_values(config(bad))
    message = str(caught.value)
    assert message.startswith(f"{key}=") and "\n" not in message and "use " in message
    check_values(config(good))


def test_ranges_come_from_the_fields_not_from_names():
    """A key's range is its field's: renaming a key cannot change how it is checked, and a key no dataclass
    declares has no range here (a method's unknown key is refused by its typed parameters)."""
    assert rule_for("barlow_twins.lambd").valid == "a number > 0"
    assert rule_for("fixmatch.lambda_u").valid == "a number >= 0"
    assert rule_for("dino.teacher_temperature_warmup").valid == "a number in [0, 1]"
    assert rule_for("new_method.teacher_temperature") is None and rule_for("data.name") is None
    assert rule_for("backbone.init") is None and rule_for("downstream.probe_layer") is None
    assert rule_for("pretext_data.extra.image_size").valid == rule_for("data.image_size").valid


def test_all_problems_in_one_line():
    with pytest.raises(UserError) as caught:
        check_values({"pretext": {"batch_size": 0, "lr": -1}, "simclr": {"temperature": 0}})
    assert str(caught.value).count("is invalid") == 3 and "\n" not in str(caught.value)
