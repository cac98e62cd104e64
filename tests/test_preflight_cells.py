"""The sweep check composes the first cell of each group choice with Hydra and gives the others that config's
copy with their own value overrides applied by OmegaConf (public API only): each cell must come out exactly as
Hydra composes it, and anything the copy cannot take is left to Hydra."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ssl_lightning.cli.cli_checks import group_options
from ssl_lightning.cli.preflight import _apply_values, _cell_config, _job, cells_of
from ssl_lightning.config.sweep_cells import parse

CONF = Path(__file__).resolve().parent.parent / "conf"


def test_every_cell_of_a_sweep_is_the_config_hydra_composes():
    argv = ["-m", "+experiment=simclr,rotation", "data.fraction=0.05,0.5", "seed=0,1", "++simclr.temperature=0.3",
            "data=synthetic", "profile=smoke"]
    cells, _ = cells_of(argv)
    groups = set(group_options(CONF))
    composed: dict = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="ssl_lightning"):
        pairs = [(_cell_config(compose, cell, groups, composed)[1], compose(config_name="config", overrides=cell))
                 for cell in cells]
    assert len(pairs) == 8 and len(composed) == 2  # two group choices: six of the cells took the copy
    for ours, hydras in pairs:
        assert OmegaConf.to_container(ours) == OmegaConf.to_container(hydras)
    assert {(p.data.fraction, p.seed, p.simclr.temperature) for p, _ in pairs} == \
        {(f, s, 0.3) for f in (0.05, 0.5) for s in (0, 1)}


def test_what_the_copy_cannot_take_is_left_to_hydra():
    config = OmegaConf.create({"a": {"b": 1}, "hydra": {"x": 1}})
    OmegaConf.set_struct(config, True)
    job = _job(config)
    assert "hydra" not in job
    assert not _apply_values(job, parse(["a.c=2"]))  # a key the config lacks: Hydra names it
    assert not _apply_values(_job(config), parse(["+a.d=1"]))  # `+` and `~`: Hydra's own rules
    assert not _apply_values(_job(config), parse(["~a.b"]))
    assert not _apply_values(_job(config), parse(["hydra.x=2"]))
    assert _apply_values(job, parse(["++a.c=2", "a.b={e:3}"])) and OmegaConf.to_container(job) == \
        {"a": {"b": {"e": 3}, "c": 2}}
