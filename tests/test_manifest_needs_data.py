"""`data.manifest=<csv>` without `data=manifest` is refused, not ignored (issue 32, item 6)."""

from __future__ import annotations

import pytest

from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from tests.conftest import run_entry


def test_a_manifest_given_to_another_data_set_is_refused():
    with pytest.raises(UserError, match="data.manifest is read only with data=manifest; add data=manifest"):
        DataConfig.from_mapping({"name": "imagefolder", "root": "/tmp", "manifest": "/tmp/list.csv"})
    assert DataConfig.from_mapping({"name": "manifest", "manifest": "/tmp/list.csv"}).manifest == "/tmp/list.csv"


def test_the_command_line_says_so_in_one_line_before_any_folder(tmp_path):
    (tmp_path / "list.csv").write_text("path,label\n")
    done = run_entry(["+experiment=supervised", "data=synthetic", "profile=smoke",
                      f"data.manifest={tmp_path / 'list.csv'}"], tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "add data=manifest" in lines[0] and not (tmp_path / "run").exists()
