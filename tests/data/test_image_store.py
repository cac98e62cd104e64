"""The image store on small generated trees: decode once, share, detect change and corruption, read back exactly."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ssl_lightning.data import image_store
from ssl_lightning.data.config import DataConfig
from ssl_lightning.data.image_store import ImageStore, StoreRequest, store_key
from ssl_lightning.data.imagefolder import load as load_imagefolder
from ssl_lightning.data.loading import ALL, IndexedImages, ShardedBatchSampler
from ssl_lightning.data.mapped_images import ConcatImages, ExpandChannels, LazyImages, take
from ssl_lightning.data.unlabeled_folder import load as load_unlabeled
from ssl_lightning.errors import UserError
from tests.distributed.spawning import free_port, run_processes, use_ranks_from_environment


def _tree(root: Path, per_class: int = 6, size: int = 20) -> list[Path]:
    """Random RGB images, JPEG and PNG mixed, two classes; returns the files in sorted order."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("benign", "malignant")):
        for k in range(per_class):
            suffix = ".jpg" if k % 2 else ".png"
            path = root / name / f"p{k % 2}" / f"{c}_{k}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return sorted(p for p in root.rglob("*") if p.is_file())


def _request(root: Path, files: list[Path], **kwargs) -> StoreRequest:
    values = {"labels": None, "image_size": None, "channels": None, "include": None, "decode_workers": 1, **kwargs}
    return StoreRequest(root=root, files=files, **values)


def _pillow(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if size is not None:
            image = image.resize((size, size), Image.BILINEAR)
        return np.asarray(image).transpose(2, 0, 1)


def test_built_once_then_reused_and_pixels_equal_the_decoded_files(tmp_path):
    files = _tree(tmp_path / "tree")
    store = ImageStore(tmp_path / "cache")
    first = store.open(_request(tmp_path / "tree", files, decode_workers=2))
    again = store.open(_request(tmp_path / "tree", files, decode_workers=1))  # workers do not change the pixels
    assert first.built and not again.built and first.key == again.key
    assert first.images.shape == (len(files), 3, 20, 20)
    for row, path in enumerate(files):
        np.testing.assert_array_equal(again.images.take([row])[0].numpy(), _pillow(path))
    assert again.files == [str(p.relative_to(tmp_path / "tree")) for p in files]


def test_resized_store_equals_pillow_bilinear(tmp_path):
    files = _tree(tmp_path / "tree", size=24)
    stored = ImageStore(tmp_path / "cache").open(_request(tmp_path / "tree", files, image_size=16))
    expected = np.stack([_pillow(path, 16) for path in files])
    np.testing.assert_array_equal(stored.images.numpy(), expected)


def test_shards_split_rows_and_gathers_cross_them(tmp_path, monkeypatch):
    files = _tree(tmp_path / "tree", per_class=7)  # 14 images, 5 per shard -> 5 + 5 + 4
    monkeypatch.setattr(image_store, "SHARD_BYTES", 5 * 3 * 20 * 20)
    stored = ImageStore(tmp_path / "cache").open(_request(tmp_path / "tree", files, decode_workers=2))
    manifest = json.loads((tmp_path / "cache" / stored.key / "manifest.json").read_text())
    assert [s["bytes"] > 0 for s in manifest["shards"]] == [True] * 3 and manifest["per_shard"] == 5
    rows = np.array([13, 0, 5, 4, 9, 10])
    expected = np.stack([_pillow(files[r]) for r in rows])
    np.testing.assert_array_equal(stored.images.take(rows).numpy(), expected)


@pytest.mark.parametrize("change", ["modified", "added", "removed"])
def test_a_changed_added_or_removed_file_gives_a_new_key(tmp_path, change):
    root = tmp_path / "tree"
    files = _tree(root)
    before = store_key(_request(root, files))
    if change == "modified":
        Image.new("RGB", (20, 20), (1, 2, 3)).save(files[0])
        os.utime(files[0], ns=(1, 1))
    elif change == "added":
        Image.new("RGB", (20, 20), (1, 2, 3)).save(root / "benign" / "new.png")
        files = sorted(p for p in root.rglob("*") if p.is_file())
    else:
        files[0].unlink()
        files = files[1:]
    assert store_key(_request(root, files)) != before
    assert store_key(_request(root, files, image_size=16)) != store_key(_request(root, files))


def test_a_truncated_shard_is_detected_and_rebuilt(tmp_path):
    files = _tree(tmp_path / "tree")
    store = ImageStore(tmp_path / "cache")
    first = store.open(_request(tmp_path / "tree", files))
    shard = tmp_path / "cache" / first.key / "shard_00000.npy"
    with open(shard, "r+b") as stream:
        stream.truncate(shard.stat().st_size - 100)
    rebuilt = store.open(_request(tmp_path / "tree", files))
    assert rebuilt.built and rebuilt.key == first.key
    np.testing.assert_array_equal(rebuilt.images.take([len(files) - 1])[0].numpy(), _pillow(files[-1]))


def test_a_flipped_byte_fails_the_sampled_checksum(tmp_path):
    files = _tree(tmp_path / "tree")
    store = ImageStore(tmp_path / "cache")
    first = store.open(_request(tmp_path / "tree", files))
    shard = tmp_path / "cache" / first.key / "shard_00000.npy"
    data = bytearray(shard.read_bytes())
    data[200] ^= 0xFF  # inside the first sampled block
    shard.write_bytes(bytes(data))
    assert store.open(_request(tmp_path / "tree", files)).built


def _bad_tree(root: Path) -> list[Path]:
    files = _tree(root)
    (root / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not a PNG body")
    whole = (root / "malignant" / "p1" / "1_1.jpg").read_bytes()
    (root / "malignant" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # header fine, data truncated
    return sorted([*files, root / "benign" / "broken.png", root / "malignant" / "cut.jpg"])


def test_bad_images_are_skipped_or_named(tmp_path):
    files = _bad_tree(tmp_path / "tree")
    store = ImageStore(tmp_path / "cache")
    with pytest.raises(UserError, match=r"broken\.png.*data\.on_bad_image=skip"):
        store.open(_request(tmp_path / "tree", files, on_bad_image="error"))
    assert not any((tmp_path / "cache").glob("*.tmp-*")) and not any((tmp_path / "cache").glob("*/manifest.json"))
    labels = np.arange(len(files))
    skipped = store.open(_request(tmp_path / "tree", files, labels=labels, on_bad_image="skip", decode_workers=2))
    good = [k for k, p in enumerate(files) if p.name not in ("broken.png", "cut.jpg")]
    assert skipped.kept.tolist() == good and skipped.labels.tolist() == good
    np.testing.assert_array_equal(skipped.images.numpy(), np.stack([_pillow(files[k]) for k in good]))
    with pytest.raises(UserError, match=r"broken\.png"):  # the stored entry still names the file in error mode
        store.open(_request(tmp_path / "tree", files, labels=labels, on_bad_image="error"))


def test_truncated_jpeg_alone_is_named(tmp_path):
    files = _tree(tmp_path / "tree")
    whole = files[1].read_bytes()
    files[1].write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=files[1].name):
        ImageStore(tmp_path / "cache").open(_request(tmp_path / "tree", files, decode_workers=2))


def _open_and_report(root: str, cache: str, out: str) -> None:
    files = sorted(p for p in Path(root).rglob("*") if p.is_file())
    stored = ImageStore(Path(cache)).open(_request(Path(root), files, decode_workers=1))
    Path(out).write_text(json.dumps({"built": stored.built, "sum": int(stored.images.numpy().sum())}))


def test_two_cells_started_together_share_one_build(tmp_path):
    _tree(tmp_path / "tree", per_class=20)
    context = multiprocessing.get_context("fork")
    outs = [tmp_path / f"cell{k}.json" for k in range(2)]
    cells = [context.Process(target=_open_and_report, args=(str(tmp_path / "tree"), str(tmp_path / "cache"), str(o)))
             for o in outs]
    for cell in cells:
        cell.start()
    for cell in cells:
        cell.join(120)
        assert cell.exitcode == 0
    reports = [json.loads(o.read_text()) for o in outs]
    assert sorted(r["built"] for r in reports) == [False, True]
    assert reports[0]["sum"] == reports[1]["sum"]
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def _ddp_rank(rank: int, world_size: int, port: int, root: str, cache: str, out: str) -> None:
    use_ranks_from_environment(rank, world_size, port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        config = DataConfig(name="imagefolder", root=root, image_cache=cache, decode_workers=1)
        images = load_imagefolder(config)
        checksum = torch.tensor([int(take(images.train_images, np.arange(len(images.train_images))).sum())])
        gathered = [torch.zeros_like(checksum) for _ in range(world_size)]
        torch.distributed.all_gather(gathered, checksum)
        Path(out, f"rank{rank}.json").write_text(json.dumps({"sums": [int(g) for g in gathered]}))
    finally:
        torch.distributed.destroy_process_group()


def test_ddp_ranks_share_one_build(tmp_path, caplog):
    _tree(tmp_path / "tree", per_class=20)
    (tmp_path / "out").mkdir()
    run_processes(_ddp_rank, (2, free_port(), str(tmp_path / "tree"), str(tmp_path / "cache"), str(tmp_path / "out")),
                  world_size=2, timeout=180)
    reports = [json.loads((tmp_path / "out" / f"rank{r}.json").read_text()) for r in range(2)]
    assert reports[0]["sums"][0] == reports[0]["sums"][1] == reports[1]["sums"][0]
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1  # one entry, no left-over temporary folder
    manifest = json.loads((entries[0] / "manifest.json").read_text())
    assert manifest["shape"][0] == 40


def test_imagefolder_through_the_store_equals_the_in_memory_path(tmp_path):
    _tree(tmp_path / "tree", per_class=10)
    in_memory = load_imagefolder(DataConfig(name="imagefolder", root=str(tmp_path / "tree"), image_size=16))
    mapped = load_imagefolder(DataConfig(name="imagefolder", root=str(tmp_path / "tree"), image_size=16,
                                         image_cache=str(tmp_path / "cache")))
    assert isinstance(mapped.train_images, LazyImages) and isinstance(in_memory.train_images, torch.Tensor)
    np.testing.assert_array_equal(mapped.train_images.numpy(), in_memory.train_images.numpy())
    np.testing.assert_array_equal(mapped.test_images.numpy(), in_memory.test_images.numpy())
    assert torch.equal(mapped.train_labels, in_memory.train_labels)
    assert list(mapped.train_files) == list(in_memory.train_files)


def test_dataloader_workers_read_batches_from_the_map(tmp_path):
    _tree(tmp_path / "tree", per_class=10)
    images = load_imagefolder(DataConfig(name="imagefolder", root=str(tmp_path / "tree"),
                                         image_cache=str(tmp_path / "cache")))
    dataset = IndexedImages(images.train_images, images.train_labels, np.arange(len(images.train_labels)))
    sampler = ShardedBatchSampler(len(dataset), 4, shuffle=True, remainder=ALL, seed=1)
    loader = DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=2, pin_memory=False)
    seen = 0
    for (batch, labels), rows in zip(loader, sampler, strict=True):
        np.testing.assert_array_equal(batch.numpy(), take(images.train_images, rows).numpy())
        assert torch.equal(labels, images.train_labels[rows])
        seen += len(batch)
    assert seen == len(dataset)


def test_union_of_grey_folder_and_colour_target_stays_lazy(tmp_path):
    _tree(tmp_path / "tree", per_class=5)
    grey = tmp_path / "grey"
    grey.mkdir()
    for k in range(4):
        Image.new("L", (20, 20), 30 * k).save(grey / f"{k}.png")
    colour = load_imagefolder(DataConfig(name="imagefolder", root=str(tmp_path / "tree"),
                                         image_cache=str(tmp_path / "cache")))
    extra = load_unlabeled(DataConfig(name="unlabeled_folder", root=str(grey), image_cache=str(tmp_path / "cache")))
    assert extra.channels == 1
    union = ConcatImages([colour.train_images, ExpandChannels(extra.train_images, 3)])
    batch = union.take([len(colour.train_images) + 2, 0])
    assert batch.shape == (2, 3, 20, 20) and bool((batch[0] == 60).all())
    np.testing.assert_array_equal(batch[1].numpy(), take(colour.train_images, [0])[0].numpy())
