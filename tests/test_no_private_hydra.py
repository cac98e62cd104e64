"""The package reaches Hydra only through its public API, so that a Hydra release may move its internals
(issue 34): no `hydra._internal` anywhere in the package source, imports and strings alike."""

from __future__ import annotations

from pathlib import Path

import ssl_lightning

PACKAGE = Path(ssl_lightning.__file__).resolve().parent


def test_the_package_never_names_hydra_internals():
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20  # the package itself, not an empty folder
    naming = [f"{path.relative_to(PACKAGE)}:{number}" for path in sources
              for number, line in enumerate(path.read_text().splitlines(), start=1) if "hydra._internal" in line]
    assert not naming, f"private Hydra API named at {', '.join(naming)}"
