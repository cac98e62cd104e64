"""Fashion-MNIST, the default data set: data.root, then Debian's package files, then torchvision's download."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_lightning.data.base import ImageSet, as_nchw_uint8
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.idx_format import read_idx
from ssl_lightning.data.registry import DatasetSpec, register
from ssl_lightning.errors import UserError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _complete_folder(folder: Path) -> dict[str, Path] | None:
    found = {key: _find(folder, stem) for key, stem in _FILES.items()}
    return found if all(found.values()) else None  # type: ignore[return-value]


def candidate_folders(root: str | None) -> list[Path]:
    """Where we look, in order: the user's root (flat, or torchvision's layout), then Debian's package."""
    folders: list[Path] = []
    if root:
        base = Path(root).expanduser()
        folders += [base, base / "FashionMNIST" / "raw"]
    folders.append(DEBIAN_DIR)
    return folders


def _download(root: str | None) -> Path:
    from torchvision.datasets import FashionMNIST

    target = Path(root or "data").expanduser()
    try:
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
    except Exception as error:  # network errors come in many types
        raise UserError(
            f"Fashion-MNIST is not in {', '.join(map(str, candidate_folders(root)))} and downloading it to "
            f"{target} failed ({type(error).__name__}); run `make data` or set data.root to a folder "
            "with the four idx files"
        ) from error
    return target / "FashionMNIST" / "raw"


def load(config: DataConfig) -> ImageSet:
    """Load Fashion-MNIST as uint8 tensors; says every place it looked when it cannot find the files."""
    folders = candidate_folders(config.root)
    files = next((found for folder in folders if (found := _complete_folder(folder))), None)
    if files is None:
        if not config.download:
            raise UserError(
                f"Fashion-MNIST not found in {', '.join(map(str, folders))}; run `make data`, set data.root "
                "to a folder with the four idx files, or allow data.download=true"
            )
        files = _complete_folder(_download(config.root))
        assert files is not None
    arrays = {}
    for key, path in files.items():
        try:
            arrays[key] = read_idx(path)
        except (ValueError, OSError, EOFError) as error:
            raise UserError(f"cannot read Fashion-MNIST file {path}: {error}; delete it and run `make data`") from error
    return ImageSet(
        train_images=as_nchw_uint8(arrays["train_images"], channels_last=False),
        train_labels=torch.as_tensor(arrays["train_labels"].astype("int64")),
        test_images=as_nchw_uint8(arrays["test_images"], channels_last=False),
        test_labels=torch.as_tensor(arrays["test_labels"].astype("int64")),
        classes=list(CLASSES),
        notes=[f"Fashion-MNIST from {files['train_images'].parent}"],
    )


register(DatasetSpec("fashion_mnist", load, test_split="own", leakage="by_name"))
