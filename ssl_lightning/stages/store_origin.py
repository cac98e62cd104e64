"""What a pretext store entry records about its origin, for the card `python -m ssl_lightning.export` writes."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ssl_lightning.config.settings import RunSettings
from ssl_lightning.stages.results import git_commit


def card_fields(settings: RunSettings) -> dict[str, Any]:
    """Backbone settings, data, pretext data, init, seed and code version of the run that trains the entry."""
    return {"backbone_config": asdict(settings.backbone), "data": settings.data.name,
            "pretext_data": "+".join(settings.pretext_data) or None, "init": settings.backbone.init,
            "seed": settings.seed, "git_commit": git_commit()}
