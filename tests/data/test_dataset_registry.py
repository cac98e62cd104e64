"""The data-set registry: a new data set is one module-like block (loader + registration) that load_dataset, the
data settings and the leakage guards pick up, with no name list to edit; every conf file names a registered data
set and every registered data set has one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssl_lightning.data import load_dataset, registry
from ssl_lightning.data.base import ImageSet
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.fractions import make_label_split
from ssl_lightning.data.leakage import check_pretext_leakage
from ssl_lightning.data.pretext_sources import TARGET, source_configs
from ssl_lightning.errors import UserError

CONF = Path(__file__).resolve().parents[2] / "conf"


# --- a new data set, written as its module would be: arrays on disk, <root>/<split>/<label>_<k>.npy -----------

def _arrays(root: Path, split: str) -> list[Path]:
    return sorted((root / split).glob("*.npy"))


def _read(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([np.load(path) for path in files]))
    labels = torch.tensor([int(path.stem.split("_")[0]) for path in files])
    return images, labels


def load_npy(config: DataConfig) -> ImageSet:
    root = Path(config.root or "").expanduser()
    train, test = _arrays(root, "train"), _arrays(root, "test")
    if not train:
        raise UserError(f"data=npy_arrays: no .npy files in {root}/train")
    (train_x, train_y), (test_x, test_y) = _read(train), _read(test)
    return ImageSet(train_x, train_y, test_x, test_y, classes=["zero", "one"],
                    train_files=np.asarray([str(path) for path in train], dtype=object),
                    test_files=np.asarray([str(path) for path in test], dtype=object))


def npy_files(config: DataConfig) -> tuple[Path, list[Path]] | None:
    root = Path(config.root).expanduser() if config.root else None
    return (root, sorted(root.rglob("*.npy"))) if root is not None and root.is_dir() else None


NPY = registry.DatasetSpec("npy_arrays", load_npy, test_split="own", leakage="files", files=npy_files)

# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def npy_registered(monkeypatch):
    """The new data set registered (through `register`, as its module would) for one test only."""
    registry.discover()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    registry.register(NPY)
    return NPY


def write_npy_set(root: Path, seed: int, train: int = 10, test: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        (root / split).mkdir(parents=True)
        for k in range(count):
            np.save(root / split / f"{k % 2}_{k}.npy", rng.integers(0, 256, (1, 6, 6), dtype=np.uint8))
    return root


def test_a_registered_data_set_loads_through_load_dataset(npy_registered, tmp_path):
    root = write_npy_set(tmp_path / "a", seed=0)
    images = load_dataset(DataConfig(name="npy_arrays", root=str(root)))
    assert tuple(images.train_images.shape) == (10, 1, 6, 6) and tuple(images.test_images.shape) == (4, 1, 6, 6)
    assert images.train_labels.tolist() == [int(p.stem[0]) for p in _arrays(root, "train")]
    assert torch.equal(images.test_images[0], torch.from_numpy(np.load(_arrays(root, "test")[0])))
    assert "npy_arrays" in registry.names(downstream_only=True)
    with pytest.raises(UserError, match=r"unknown data set 'nope'; valid: .*npy_arrays.* \(data=<name>\)"):
        load_dataset(DataConfig(name="nope"))


def _leakage(target_root: Path, entry: dict) -> None:
    target = DataConfig(name="npy_arrays", root=str(target_root))
    images = load_dataset(target)
    split = make_label_split(images.train_labels.numpy(), 0.5, 0, 0.2, images.classes)
    sources = source_configs({TARGET: {}, "more": entry}, target)
    check_pretext_leakage(sources, target, images, split.val)


def test_the_leakage_guard_checks_the_new_data_set_by_its_files(npy_registered, tmp_path):
    write_npy_set(tmp_path / "a", seed=0)
    copy = tmp_path / "copy"
    copy.mkdir()
    for k, path in enumerate(_arrays(tmp_path / "a", "test")):
        shutil.copy(path, copy / f"renamed{k}.npy")
    with pytest.raises(UserError, match=r"pretext_data.more holds 4 of the target's test images \(.*copy\); point"):
        _leakage(tmp_path / "a", {"name": "npy_arrays", "root": str(copy)})
    write_npy_set(tmp_path / "b", seed=7)
    _leakage(tmp_path / "a", {"name": "npy_arrays", "root": str(tmp_path / "b")})  # other images: accepted
    target = DataConfig(name="npy_arrays", root=str(tmp_path / "a"))  # the same root: the target's pool only
    assert source_configs({"more": {"name": "npy_arrays", "root": str(tmp_path / "a")}}, target) == {"more": None}


def test_a_data_set_fixed_by_name_is_refused_under_another_root(npy_registered, tmp_path):
    registry.register(registry.DatasetSpec("npy_named", load_npy, test_split="own", leakage="by_name"))
    target = DataConfig(name="npy_named", root=str(tmp_path / "a"))
    sources = source_configs({TARGET: {}, "npy_named": {"root": str(tmp_path / "b")}}, target)
    with pytest.raises(UserError, match=r"pretext_data.npy_named is the target data set npy_named again"):
        check_pretext_leakage(sources, target, None, np.arange(0))  # type: ignore[arg-type]


def test_the_spec_decides_test_folds_and_pretext_only(npy_registered, tmp_path):
    with pytest.raises(UserError, match=r"data.test_folds=3: data=npy_arrays has a fixed test split"):
        DataConfig.from_mapping({"name": "npy_arrays", "test_folds": 3})
    registry.register(registry.DatasetSpec("npy_drawn", load_npy, test_split="drawn", leakage="files",
                                           files=npy_files))
    assert DataConfig.from_mapping({"name": "npy_drawn", "test_folds": 3}).test_folds == 3
    registry.register(registry.DatasetSpec("npy_pool", load_npy, test_split="none", leakage="files",
                                           files=npy_files))
    root = write_npy_set(tmp_path / "a", seed=0)
    with pytest.raises(UserError, match=r"'npy_pool' has no labels and can only be pretext data"):
        load_dataset(DataConfig(name="npy_pool", root=str(root)))
    assert len(load_dataset(DataConfig(name="npy_pool", root=str(root)), pretext_only=True).train_images) == 10
    assert "npy_pool" in registry.names() and "npy_pool" not in registry.names(downstream_only=True)


def test_a_data_set_cannot_be_registered_without_saying_how_the_guards_see_it():
    with pytest.raises(TypeError, match="leakage"):
        registry.DatasetSpec("npy_bare", load_npy, test_split="own")  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match="files"):
        registry.DatasetSpec("npy_bare", load_npy, test_split="own", leakage="files")
    with pytest.raises(RuntimeError, match="leakage="):
        registry.DatasetSpec("npy_bare", load_npy, test_split="own", leakage="none")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="test_split="):
        registry.DatasetSpec("npy_bare", load_npy, test_split="fixed", leakage="by_name")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="target"):
        registry.DatasetSpec(TARGET, load_npy, test_split="own", leakage="by_name")


def test_a_name_is_registered_once(npy_registered):
    with pytest.raises(RuntimeError, match="registered twice"):
        registry.register(registry.DatasetSpec("npy_arrays", load_npy, test_split="own", leakage="by_name"))


def _conf_names(group: str) -> dict[str, str]:
    """conf/<group>/<file>.yaml -> the data set name it sets (pretext_data files hold one entry each)."""
    found = {}
    for path in sorted((CONF / group).glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        if group == "pretext_data":
            ((_, values),) = values.items()
        found[path.stem] = values["name"]
    return found


def test_every_conf_file_names_a_registered_data_set_and_every_data_set_has_one():
    registered = registry.specs()
    data, pretext = _conf_names("data"), _conf_names("pretext_data")
    assert data and all(stem == name for stem, name in data.items())
    assert all(stem == name for stem, name in pretext.items())
    assert {name: registered[name].downstream for name in data} == dict.fromkeys(data, True)
    assert set(pretext) - {TARGET} <= set(registered)
    for name, spec in registered.items():  # data=<name> for a labelled one, pretext_data=<name> for the others
        assert name in (data if spec.downstream else pretext), f"{name} has no conf file"


def test_a_manifest_as_pretext_data_is_checked_by_the_files_it_lists(tmp_path):
    """Before the registry a manifest was on neither guard list, so a pretext manifest of the target's test
    images passed."""
    from PIL import Image

    from ssl_lightning.data.imagefolder import load as load_imagefolder

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "tiles" / label).mkdir(parents=True)
        for k in range(8):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "tiles" / label / f"{k}.png")
    target = DataConfig(name="imagefolder", root=str(tmp_path / "tiles"), image_cache=str(tmp_path / "cache"))
    images = load_imagefolder(target)
    split = make_label_split(images.train_labels.numpy(), 0.5, 0, 0.2, images.classes)
    manifest = tmp_path / "list.csv"
    manifest.write_text("path,label\n" + "".join(f"{path},x\n" for path in images.test_files))
    sources = source_configs({TARGET: {}, "listed": {"name": "manifest", "manifest": str(manifest)}}, target)
    with pytest.raises(UserError, match=rf"pretext_data.listed holds {len(images.test_files)} of the target's test "
                                        r"images \(.*list.csv\)"):
        check_pretext_leakage(sources, target, images, split.val)
