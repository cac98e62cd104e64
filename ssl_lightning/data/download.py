"""Files of a public data set: used where they are, else fetched once with torchvision's downloader."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ssl_lightning.errors import UserError


def ensure_files(folder: Path, needed: list[str], download: bool, name: str, fetch: Callable[[], object]) -> Path:
    """`folder` when it holds every needed file; otherwise `fetch()` (a torchvision download) or a clear error."""
    if all((folder / file).is_file() for file in needed):
        return folder
    if not download:
        raise UserError(f"{name} files not found in {folder}; set data.download=true or data.root")
    try:
        fetch()
    except Exception as error:  # network errors come in many types
        raise UserError(
            f"{name} not found in {folder} and the download failed ({type(error).__name__}); "
            f"copy {folder.name} into data.root"
        ) from error
    return folder
