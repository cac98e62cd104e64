"""docs/contributing.md's worked examples, taken from the guide between their markers and run: the method registers
and trains, its experiment file agrees with its dataclass, the data-set loader loads, the metric and the probe
compute what their text says. If the code they use changes, these fail and the guide is fixed with it."""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml

from ssl_lightning import record
from ssl_lightning.config import schema, schema_files
from ssl_lightning.data import load_dataset
from ssl_lightning.data import registry as data_registry
from ssl_lightning.data.config import DataConfig
from ssl_lightning.errors import UserError
from ssl_lightning.evaluation import metrics
from ssl_lightning.evaluation.metrics import classification_metrics
from ssl_lightning.methods import registry
from ssl_lightning.probes.scoring import cross_entropy, held_out_score
from ssl_lightning.report import metric_choice
from tests.methods.lightning_kit import compact_encoder, constant_sgd, fit, pretext_data, synthetic_images

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "contributing.md"


def guide_block(name: str, language: str) -> str:
    """The code between `<!-- contributing:<name>:start -->` and `...:end -->`, without its fences."""
    text = GUIDE.read_text()
    start, end = f"<!-- contributing:{name}:start -->", f"<!-- contributing:{name}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"docs/contributing.md must mark {name!r} once"
    block = text[text.index(start) + len(start):text.index(end)].strip()
    fence = f"```{language}\n"
    assert block.startswith(fence) and block.endswith("\n```"), f"{name!r} must be one {fence.strip()} block"
    return block[len(fence):-len("\n```")]


def module_from_guide(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The block written as a module file and imported (registered in sys.modules for this test only)."""
    path = tmp_path / f"contributed_{name}.py"
    path.write_text(guide_block(name, "python"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, path.stem, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The example registers into a copy of the registry, so no other test sees the extra method."""
    registry.methods()  # every real method registered first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for cached in (schema.sections, schema.field_of):  # rebuilt with the example, and without it afterwards
        cached.cache_clear()
    yield
    for cached in (schema.sections, schema.field_of):
        cached.cache_clear()


def test_add_a_method_registers_parses_and_trains(tmp_path, monkeypatch, private_registry):
    module_from_guide("method", tmp_path, monkeypatch)
    assert "vflip" in registry.experiments()
    spec = registry.get("vflip")
    assert spec.display == "Vertical flip" and spec.section == "vflip"

    values = yaml.safe_load(guide_block("method-config", "yaml"))
    assert values["experiment"] == "vflip" and values["defaults"] == ["/schema/vflip@vflip", "_self_"]
    assert values["vflip"] == {}  # presets only: every default comes from the dataclass ...
    assert schema_files.nodes()["vflip"] == asdict(spec.params()) == {"jitter_strength": 0.5}  # ... via make schema
    with pytest.raises(UserError, match=r"vflip.jitter_strength=-1.0 must be a number >= 0 \(\+experiment=vflip\)"):
        spec.parse({"jitter_strength": -1})

    method = spec.build(compact_encoder(), constant_sgd(0.05), 1, spec.parse({"jitter_strength": 0.5}))
    before = [p.detach().clone() for p in method.head.parameters()]
    losses = fit(method, pretext_data(synthetic_images(train_size=64), batch_size=16), steps=2, root=str(tmp_path))
    assert all(math.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, method.head.parameters(), strict=True))


def test_add_a_data_set_loads_an_npz_and_refuses_in_one_line(tmp_path, monkeypatch):
    data_registry.discover()  # every real data set first; the example registers into a copy of the registry
    monkeypatch.setattr(data_registry, "_REGISTRY", dict(data_registry._REGISTRY))
    loader = module_from_guide("dataset", tmp_path, monkeypatch)
    assert data_registry.get("npz").load is loader.load
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, train_images=rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8),
             train_labels=np.arange(20) % 3, test_images=rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8),
             test_labels=np.arange(6) % 3)
    images = load_dataset(DataConfig(name="npz", root=str(path)))
    assert tuple(images.train_images.shape) == (20, 3, 8, 8) and images.train_images.dtype == torch.uint8
    assert tuple(images.test_images.shape) == (6, 3, 8, 8) and images.classes == ["0", "1", "2"]
    assert images.train_labels.tolist() == [i % 3 for i in range(20)]

    np.savez(tmp_path / "partial.npz", train_images=np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(UserError, match="lacks train_labels, test_images, test_labels"):
        loader.load(DataConfig(name="npz", root=str(tmp_path / "partial.npz")))
    with pytest.raises(UserError, match="is not a file"):
        loader.load(DataConfig(name="npz", root=str(tmp_path)))
    with pytest.raises(UserError, match="data.image_size=16, but .* holds 8 px images"):
        loader.load(DataConfig(name="npz", root=str(path), image_size=16))


def test_add_a_metric_computes_and_declares(monkeypatch):
    namespace = dict(vars(metrics), MetricSpec=record.MetricSpec)
    exec(compile(guide_block("metric", "python"), "contributing.md (metric)", "exec"), namespace)
    worst = namespace["worst_class_recall"]
    assert worst(np.array([[5, 0], [3, 2]])) == pytest.approx(0.4)  # recalls 5/5 and 2/5
    assert worst(np.array([[0, 0, 0], [1, 3, 0], [0, 1, 1]])) == pytest.approx(0.5)  # class 0 has no test images
    spec = namespace["WORST_CLASS"]
    assert spec.key == f"test_{spec.option}"  # the naming every declared metric follows
    monkeypatch.setattr(record, "TEST_METRICS", (*record.TEST_METRICS, spec))
    assert "worst_class_acc" in metric_choice.choices()  # the report offers it once declared
    assert record.declared_metric("test_worst_class_acc") == spec
    monkeypatch.setattr(metrics, "worst_class_recall", worst, raising=False)  # as if written into metrics.py
    pooled = [spec.key for spec in record.TEST_METRICS if spec.from_confusion]  # what report/folds.py pools
    assert "test_worst_class_acc" in pooled and getattr(metrics, spec.from_confusion) is worst


def test_add_a_probe_gives_class_probabilities(tmp_path, monkeypatch):
    probe = module_from_guide("probe", tmp_path, monkeypatch)
    generator = torch.Generator().manual_seed(0)
    centres = torch.eye(4)[:3] * 5
    labels = torch.arange(30) % 3
    bank = centres[labels] + 0.3 * torch.randn(30, 4, generator=generator)
    test_labels = torch.arange(12) % 3
    queries = centres[test_labels] + 0.3 * torch.randn(12, 4, generator=generator)
    probabilities = probe.ncm_probabilities(bank, labels, queries, num_classes=4)  # class 3 has no labelled image
    assert probabilities.shape == (12, 4)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(12, dtype=torch.float64))
    assert classification_metrics(probabilities, test_labels, 4).acc == 1.0
    assert held_out_score(probabilities, test_labels, "balanced_acc") == 1.0
    assert math.isfinite(cross_entropy(probabilities, test_labels))
    one = probe.ncm_probabilities(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]),
                                  torch.tensor([[1.0, 1.0]]), num_classes=2, temperature=0.5)
    assert one[0].tolist() == pytest.approx([0.5, 0.5])  # equally close to both class means
    with pytest.raises(ValueError, match="temperature must be > 0"):
        probe.ncm_probabilities(bank, labels, queries, num_classes=3, temperature=0)
