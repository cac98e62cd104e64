"""Every loader reads small files written in the real on-disk format and returns exactly the pixels and labels."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ssl_lightning.data import LOADERS, fashion_mnist, load_dataset
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from tests.data.writers import (
    idx_bytes,
    write_cifar_batch,
    write_cifar_meta,
    write_fashion_mnist,
    write_png,
    write_stl10_images,
    write_stl10_labels,
)

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def random_uint8(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


# --- Fashion-MNIST ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_debian_copy(tmp_path, monkeypatch) -> Path:
    """Point the system-wide fallback at an empty place, so only the files a test writes can be found."""
    absent = tmp_path / "no-debian-package"
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", absent)
    return absent


def fashion_arrays() -> dict[str, np.ndarray]:
    return {
        "train_images": random_uint8((7, 28, 28), seed=1),
        "train_labels": np.array([0, 1, 2, 3, 9, 9, 5], dtype=np.uint8),
        "test_images": random_uint8((3, 28, 28), seed=2),
        "test_labels": np.array([4, 8, 7], dtype=np.uint8),
    }


def assert_fashion_matches(images, arrays: dict[str, np.ndarray]) -> None:
    assert images.train_images.dtype == torch.uint8 and images.train_images.shape == (7, 1, 28, 28)
    np.testing.assert_array_equal(images.train_images[:, 0].numpy(), arrays["train_images"])
    np.testing.assert_array_equal(images.test_images[:, 0].numpy(), arrays["test_images"])
    assert images.train_labels.dtype == torch.int64
    assert images.train_labels.tolist() == arrays["train_labels"].tolist()
    assert images.test_labels.tolist() == arrays["test_labels"].tolist()
    assert images.classes == fashion_mnist.CLASSES and images.num_classes == 10


def test_idx_header_is_the_published_one():
    header = idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))[:16]
    assert header == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_fashion_mnist_reads_gzipped_idx_from_root(tmp_path, no_debian_copy, layout):
    arrays = fashion_arrays()
    folder = tmp_path / "fm" if layout == "flat" else tmp_path / "fm" / "FashionMNIST" / "raw"
    write_fashion_mnist(folder, arrays, gz=True)
    images = load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path / "fm"), download=False))
    assert_fashion_matches(images, arrays)


def test_fashion_mnist_reads_plain_idx_files(tmp_path, no_debian_copy):
    arrays = fashion_arrays()
    write_fashion_mnist(tmp_path, arrays, gz=False)
    assert_fashion_matches(load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False)), arrays)


def test_fashion_mnist_root_wins_over_system_copy(tmp_path):
    """data.root is looked at first even where the Debian package is installed."""
    arrays = fashion_arrays()
    write_fashion_mnist(tmp_path, arrays)
    assert_fashion_matches(load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False)), arrays)


def test_fashion_mnist_missing_without_download_lists_where_it_looked(tmp_path, no_debian_copy):
    root = tmp_path / "nothing-here"
    root.mkdir()
    write_fashion_mnist(root, fashion_arrays())
    (root / "t10k-labels-idx1-ubyte.gz").unlink()  # an incomplete folder does not count
    with pytest.raises(UserError) as caught:
        load_dataset(DataConfig(name="fashion_mnist", root=str(root), download=False))
    message = str(caught.value)
    for place in (root, root / "FashionMNIST" / "raw", no_debian_copy):
        assert str(place) in message
    assert "\n" not in message


def test_fashion_mnist_truncated_file_is_a_user_error(tmp_path, no_debian_copy):
    write_fashion_mnist(tmp_path, fashion_arrays(), gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="train-images-idx3-ubyte"):
        load_dataset(DataConfig(name="fashion_mnist", root=str(tmp_path), download=False))


# --- CIFAR-10 --------------------------------------------------------------------------------------------------


def write_cifar(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for i in range(1, 6):
        images = random_uint8((per_batch, 3, 32, 32), seed=10 + i)
        labels = [(i + k) % 10 for k in range(per_batch)]
        write_cifar_batch(folder / f"data_batch_{i}", images, labels)
        train_images.append(images)
        train_labels += labels
    test_images = random_uint8((3, 3, 32, 32), seed=99)
    test_labels = [7, 0, 3]
    write_cifar_batch(folder / "test_batch", test_images, test_labels)
    write_cifar_meta(folder / "batches.meta", CIFAR_NAMES)
    return np.concatenate(train_images), train_labels, test_images, test_labels


def test_cifar10_reads_python_batches(tmp_path):
    train_x, train_y, test_x, test_y = write_cifar(tmp_path)
    images = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))
    assert images.train_images.shape == (20, 3, 32, 32) and images.train_images.dtype == torch.uint8
    np.testing.assert_array_equal(images.train_images.numpy(), train_x)
    np.testing.assert_array_equal(images.test_images.numpy(), test_x)
    assert images.train_labels.tolist() == train_y and images.test_labels.tolist() == test_y
    assert images.classes == CIFAR_NAMES


def test_cifar10_rows_are_colour_planes_in_row_major_order(tmp_path):
    """Byte 1024 * c + 32 * row + col of a row is channel c at (row, col)."""
    write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    row = np.zeros(3072, dtype=np.uint8)
    row[1024 * 2 + 32 * 3 + 5] = 200  # blue, row 3, column 5
    write_cifar_batch(folder / "test_batch", row[None].reshape(1, 3, 32, 32), [1])
    image = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False)).test_images[0]
    assert image[2, 3, 5] == 200 and int(image.sum()) == 200


def test_cifar10_missing_without_download_names_the_folder(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))


class RunsCommand:
    """Unpickling this calls os.system: what a booby-trapped data file would do."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def plant_trap(root: Path, victim: str) -> Path:
    """Replace one CIFAR-10 file by a pickle that would create `marker` if it were unpickled naively."""
    marker = root / "pwned"
    payload = {b"data": RunsCommand(f"touch {marker}"), b"labels": [0], b"label_names": [b"x"]}
    (root / "cifar-10-batches-py" / victim).write_bytes(pickle.dumps(payload, protocol=2))
    return marker


@pytest.mark.parametrize("victim", ["data_batch_3", "test_batch", "batches.meta"])
def test_cifar10_pickle_referencing_other_globals_is_not_run(tmp_path, victim):
    write_cifar(tmp_path)
    marker = plant_trap(tmp_path, victim)
    with pytest.raises(Exception, match="posix.system|os.system"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))
    assert not marker.exists()


@pytest.mark.parametrize("victim", ["data_batch_3", "batches.meta"])
def test_cifar10_refused_pickle_is_a_user_error_naming_the_file(tmp_path, victim):
    write_cifar(tmp_path)
    plant_trap(tmp_path, victim)
    with pytest.raises(UserError, match=victim):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))


def test_cifar10_corrupt_batch_is_a_user_error(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="data_batch_1"):
        load_dataset(DataConfig(name="cifar10", root=str(tmp_path), download=False))


# --- STL-10 ----------------------------------------------------------------------------------------------------


def write_stl10(root: Path, unlabeled: bool = True) -> dict[str, np.ndarray]:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    arrays = {
        "train_X": random_uint8((3, 3, 96, 96), seed=5),
        "test_X": random_uint8((2, 3, 96, 96), seed=6),
        "unlabeled_X": random_uint8((4, 3, 96, 96), seed=7),
    }
    arrays["train_X"][0] = 0
    arrays["train_X"][0, 1, 10, 70] = 255  # one green pixel near the top right: a transpose would move it
    for name in ("train_X", "test_X") + (("unlabeled_X",) if unlabeled else ()):
        write_stl10_images(folder / f"{name}.bin", arrays[name])
    arrays["train_y"], arrays["test_y"] = np.array([0, 9, 4]), np.array([3, 1])
    write_stl10_labels(folder / "train_y.bin", arrays["train_y"])
    write_stl10_labels(folder / "test_y.bin", arrays["test_y"])
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")
    return arrays


def test_stl10_reads_column_major_binaries(tmp_path):
    arrays = write_stl10(tmp_path)
    images = load_dataset(DataConfig(name="stl10", root=str(tmp_path), download=False))
    assert images.train_images.shape == (3, 3, 96, 96) and images.train_images.dtype == torch.uint8
    np.testing.assert_array_equal(images.train_images.numpy(), arrays["train_X"])
    np.testing.assert_array_equal(images.test_images.numpy(), arrays["test_X"])
    assert images.extra_unlabeled is not None
    np.testing.assert_array_equal(images.extra_unlabeled.numpy(), arrays["unlabeled_X"])
    assert images.train_labels.tolist() == [0, 9, 4] and images.test_labels.tolist() == [3, 1]
    assert images.classes[0] == "airplane" and images.classes[-1] == "truck"


def test_stl10_pixel_orientation(tmp_path):
    write_stl10(tmp_path)
    first = load_dataset(DataConfig(name="stl10", root=str(tmp_path), download=False)).train_images[0]
    assert first[1, 10, 70] == 255 and first[1, 70, 10] == 0 and int(first.sum()) == 255


def test_stl10_without_unlabeled_split(tmp_path):
    write_stl10(tmp_path, unlabeled=False)
    assert load_dataset(DataConfig(name="stl10", root=str(tmp_path), download=False)).extra_unlabeled is None


def test_stl10_truncated_images_are_a_user_error(tmp_path):
    write_stl10(tmp_path)
    path = tmp_path / "stl10_binary" / "train_X.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match="truncated"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path), download=False))


def test_stl10_missing_without_download_names_the_folder(tmp_path):
    with pytest.raises(UserError, match="stl10_binary"):
        load_dataset(DataConfig(name="stl10", root=str(tmp_path), download=False))


# --- ImageFolder -----------------------------------------------------------------------------------------------

MAGNIFICATION_MARK = {"x40": 40, "x10": 10}


def write_histology_tree(root: Path, per_class: dict[str, int], gray: bool = False, size: int = 12) -> None:
    """class/patientN/{x40,x10}/*.png; every image is uniform with a unique id in its first channel.

    RGB images carry (id, magnification, class index); grey images carry the id only (x10 ids are offset by 128).
    """
    image_id = 1
    for class_index, (name, count) in enumerate(sorted(per_class.items())):
        for k in range(count):
            patient = f"patient{k % 2}"
            for magnification, mark in MAGNIFICATION_MARK.items():
                path = root / name / patient / magnification / f"img{k:03d}.png"
                if gray:
                    write_png(path, image_id + (128 if mark == 10 else 0), size=size, gray=True)
                else:
                    write_png(path, (image_id, mark, 50 * class_index), size=size)
            image_id += 1


def ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 0, 0].tolist()


def imagefolder(root: Path, **options) -> object:
    return load_dataset(DataConfig(name="imagefolder", root=str(root), **options))


def test_imagefolder_reads_nested_patient_folders(tmp_path):
    write_histology_tree(tmp_path, {"benign": 6, "malignant": 10})
    images = imagefolder(tmp_path, test_split=0.25)
    assert images.classes == ["benign", "malignant"]
    assert images.train_images.dtype == torch.uint8 and images.channels == 3 and images.image_size == (12, 12)
    assert len(images.train_images) + len(images.test_images) == 2 * (6 + 10)  # both magnifications
    for part, labels in ((images.train_images, images.train_labels), (images.test_images, images.test_labels)):
        assert (part[:, 2, 0, 0] == 50 * labels).all()  # each image carries its own class


def test_imagefolder_include_selects_one_magnification(tmp_path):
    write_histology_tree(tmp_path, {"benign": 6, "malignant": 10})
    images = imagefolder(tmp_path, include="**/x40/*.png", test_split=0.25)
    marks = torch.cat([images.train_images[:, 1, 0, 0], images.test_images[:, 1, 0, 0]])
    assert len(marks) == 16 and (marks == 40).all()


def test_imagefolder_include_matching_nothing_in_a_class_is_a_user_error(tmp_path):
    write_histology_tree(tmp_path, {"benign": 3, "malignant": 3})
    with pytest.raises(UserError, match="include"):
        imagefolder(tmp_path, include="**/x100/*.png")


def test_imagefolder_split_is_stratified_seeded_and_disjoint(tmp_path):
    write_histology_tree(tmp_path, {"benign": 8, "malignant": 12})
    per_image = {"include": "**/x40/*.png", "test_split": 0.25, "group_by": "none"}  # patients: test_groups.py
    first = imagefolder(tmp_path, test_split_seed=42, **per_image)
    again = imagefolder(tmp_path, test_split_seed=42, **per_image)
    other = imagefolder(tmp_path, test_split_seed=7, **per_image)
    assert torch.bincount(first.test_labels).tolist() == [2, 3]
    assert torch.bincount(first.train_labels).tolist() == [6, 9]
    assert set(ids(first.train_images)).isdisjoint(ids(first.test_images))
    assert set(ids(first.train_images)) | set(ids(first.test_images)) == set(range(1, 21))
    assert torch.equal(first.test_images, again.test_images) and torch.equal(first.train_labels, again.train_labels)
    assert sorted(ids(other.test_images)) != sorted(ids(first.test_images))


def test_imagefolder_image_size_resizes(tmp_path):
    write_histology_tree(tmp_path, {"benign": 3, "malignant": 3})
    images = imagefolder(tmp_path, image_size=20, test_split=0.34)
    assert images.image_size == (20, 20) and images.test_images.shape[2:] == (20, 20)
    assert (images.train_images[:, 1] == images.train_images[:, 1, :1, :1]).all()  # uniform fill survives


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    write_histology_tree(tmp_path, {"benign": 3, "malignant": 3})
    write_png(tmp_path / "benign" / "odd.png", (1, 2, 3), size=16)
    with pytest.raises(UserError, match="image_size"):
        imagefolder(tmp_path)
    assert imagefolder(tmp_path, image_size=8).image_size == (8, 8)


def test_imagefolder_grayscale_gives_one_channel(tmp_path):
    write_histology_tree(tmp_path, {"benign": 3, "malignant": 3}, gray=True)
    images = imagefolder(tmp_path, test_split=0.34)
    assert images.channels == 1 and images.test_images.shape[1] == 1
    assert set(ids(images.train_images)) | set(ids(images.test_images)) == {1, 2, 3, 4, 5, 6, 129, 130, 131, 132,
                                                                            133, 134}


def test_imagefolder_mixed_grey_and_colour_gives_three_channels(tmp_path):
    write_histology_tree(tmp_path / "grey", {"benign": 3}, gray=True)
    write_histology_tree(tmp_path / "colour", {"malignant": 3})
    root = tmp_path / "root"
    root.mkdir()
    for folder in ("grey/benign", "colour/malignant"):
        (tmp_path / folder).rename(root / Path(folder).name)
    images = imagefolder(root, test_split=0.34)
    assert images.channels == 3
    grey = torch.cat([images.train_images[images.train_labels == 0], images.test_images[images.test_labels == 0]])
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()


def test_imagefolder_train_and_test_subfolders(tmp_path):
    write_histology_tree(tmp_path / "train", {"benign": 4, "malignant": 5}, gray=True)
    write_png(tmp_path / "test" / "benign" / "t0.png", 200, gray=True)
    write_png(tmp_path / "test" / "malignant" / "t0.png", 210, gray=True)
    write_png(tmp_path / "test" / "malignant" / "t1.png", 220, gray=True)
    images = imagefolder(tmp_path, include="**/*.png")
    assert images.classes == ["benign", "malignant"]
    assert len(images.train_images) == 2 * 9
    assert sorted(zip(ids(images.test_images), images.test_labels.tolist(), strict=True)) == [(200, 0), (210, 1),
                                                                                               (220, 1)]
    assert max(ids(images.train_images)) < 200


def test_imagefolder_unreadable_image_names_the_file_or_is_skipped(tmp_path):
    write_histology_tree(tmp_path, {"benign": 3, "malignant": 3})
    bad = tmp_path / "benign" / "patient0" / "x40" / "broken.png"
    bad.write_bytes(b"\x89PNG but not really an image")
    with pytest.raises(UserError, match="broken.png"):
        imagefolder(tmp_path)
    images = imagefolder(tmp_path, on_bad_image="skip", test_split=0.34)
    assert len(images.train_images) + len(images.test_images) == 12


# --- synthetic and the registry --------------------------------------------------------------------------------


def test_synthetic_is_deterministic_for_a_seed():
    config = DataConfig(name="synthetic", train_size=40, test_size=12, num_classes=4, channels=3, image_size=16)
    first, again = load_dataset(config), load_dataset(config)
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_labels, again.test_labels)
    assert first.train_images.shape == (40, 3, 16, 16) and first.train_images.dtype == torch.uint8
    assert torch.bincount(first.train_labels).tolist() == [10] * 4
    other = load_dataset(DataConfig(name="synthetic", train_size=40, test_size=12, synthetic_seed=1, image_size=16))
    assert not torch.equal(first.train_images, other.train_images)


def test_synthetic_grey_images_have_one_channel():
    images = load_dataset(DataConfig(name="synthetic", train_size=8, test_size=4, channels=1, image_size=12))
    assert images.channels == 1 and images.image_size == (12, 12)


def test_unknown_data_set_lists_the_valid_ones():
    with pytest.raises(UserError) as caught:
        load_dataset(DataConfig(name="imagenet"))
    assert all(name in str(caught.value) for name in LOADERS)
