"""A sweep's cells, expanded from Hydra's parsed overrides with their public methods, come out in the order and
spelling of Hydra's own basic sweeper: the preflight checks the cells Hydra will run, and the report names the
never-started ones by the overrides Hydra writes into each cell's `.hydra/overrides.yaml`."""

from __future__ import annotations

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper

from ssl_lightning.config.sweep_cells import expand, parse
from ssl_lightning.errors import UserError


def test_cells_follow_the_documented_basic_sweeper_order():
    # hydra.cc/docs/tutorials/basic/running_your_app/multi-run: `db=mysql,postgresql schema=warehouse,support,school`
    # launches #0 db=mysql schema=warehouse, #1 db=mysql schema=support, ... #5 db=postgresql schema=school
    cells = expand(parse(["db=mysql,postgresql", "schema=warehouse,support,school"]), multirun=True)
    assert cells == [[f"db={db}", f"schema={schema}"] for db in ("mysql", "postgresql")
                     for schema in ("warehouse", "support", "school")]


@pytest.mark.parametrize("args", [
    ["+experiment=rotation,simclr", "data.fraction=0.05,0.25,0.5", "seed=range(0,3)", "data=synthetic"],
    ["~e", "a=1,2", "h='a,b'", "k={a:1}", "a=3,4,5", "b=[1,2]", 's="x y"', "++c.d=choice(x,'y z')", "+f=null"],
])
def test_cells_match_hydras_own_basic_sweeper(args):
    """Against the sweeper Hydra itself runs (found through its public plugin discovery), repeated keys, quoting,
    lists, dicts, deletions and every prefix included."""
    (basic,) = [sweeper for sweeper in Plugins.instance().discover(Sweeper) if sweeper.__name__ == "BasicSweeper"]
    (hydras,) = basic.split_arguments(parse(args), None)
    ours = expand(parse(args), multirun=True)
    assert len(ours) > 1 and ours == [list(cell) for cell in hydras]


def test_one_cell_without_multirun_keeps_the_command_line():
    assert expand(parse(["seed=1", "+experiment=simclr"]), multirun=False) == [["seed=1", "+experiment=simclr"]]


def test_an_interval_sweep_is_one_line():
    with pytest.raises(UserError, match=r"^data.fraction=interval\(0.1,0.5\): the basic sweeper cannot sweep"):
        expand(parse(["data.fraction=interval(0.1,0.5)"]), multirun=True)
