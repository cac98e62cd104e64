"""The sweep report end to end: results.json + TensorBoard event files on disk -> `python -m ssl_lightning.report`."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_lightning.report.curves import mean_curve, read_scalars

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 3
CSV_COLUMNS = ["data", "protocol", "method", "label", "fraction", "n", "n_failed", "test_loss_mean", "test_loss_std",
               "test_acc_mean", "test_acc_std", "seeds"]

# (folder, experiment, protocol, fraction, seed, test_loss, test_acc or None for a failed run, extra keys)
RUNS = [
    ("rot_f05_s0", "rotation", "finetune", 0.05, 0, 0.7344, 0.6411, {}),
    ("rot_f05_s1", "rotation", "finetune", 0.05, 1, 0.7760, 0.6932, {}),
    ("rot_f05_s2", "rotation", "finetune", 0.05, 2, 0.5545, 0.7559, {}),
    ("rot_f25_s0", "rotation", "finetune", 0.25, 0, 0.3881, 0.8451, {}),
    ("rot_f25_s1", "rotation", "finetune", 0.25, 1, 0.3466, 0.8664, {}),
    ("rot_f25_s2", "rotation", "finetune", 0.25, 2, None, None, {}),
    ("sim_f05_s0", "simclr", "finetune", 0.05, 0, 0.5545, 0.7559, {}),
    ("simk_f05_s0", "simclr", "finetune", 0.05, 0, 0.3569, 0.8480, {"pretext_data": ["target", "kidney"]}),
    ("simk_f05_s1", "simclr", "finetune", 0.05, 1, 0.2767, 0.8879, {"pretext_data": ["target", "kidney"]}),
    ("sup_f05_s0", "supervised", "finetune", 0.05, 0, None, None, {}),
    ("sup_f05_s1", "supervised", "finetune", 0.05, 1, None, None, {}),
    ("supi_f05_s0", "supervised", "finetune", 0.05, 0, 0.9000, 0.7000, {"init": "torchvision"}),
    ("sup_f100_s0", "supervised", "finetune", 1.0, 0, 0.3376, 0.8896, {}),
    ("sup_f100_s1", "supervised", "finetune", 1.0, 1, 0.3500, 0.8800, {}),
    ("jit_f50_s0", "rotation_jitter", "linear", 0.5, 0, 0.2897, 0.8940, {}),
    ("jit_f50_s1", "rotation_jitter", "linear", 0.5, 1, 0.3100, 0.8700, {}),
    ("jit_f50_s1_again", "rotation_jitter", "linear", 0.5, 1, 0.3300, 0.8600, {}),
]


def _curve_value(seed: int, epoch: int, offset: float) -> float:
    return round(0.5 / (epoch + 1) + 0.01 * seed + 0.1 * offset, 6)


def _write_events(folder: Path, prefix: str, seed: int) -> None:
    """Scalars as Lightning's TensorBoardLogger writes them: metric and `epoch` at the same global step."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(folder))
    for epoch in range(EPOCHS):
        step = 3 * epoch + 2
        writer.add_scalar("epoch", float(epoch), step)
        for offset, name in enumerate(("train_loss", "val_loss", "train_acc", "val_acc")):
            writer.add_scalar(f"{prefix}/{name}", _curve_value(seed, epoch, offset), step)
    writer.close()


def _write_run(root: Path, folder: str, experiment: str, protocol: str, fraction: float, seed: int,
               loss: float | None, acc: float | None, extra: dict) -> None:
    run_dir = root / folder
    results = {"status": "ok" if acc is not None else "failed", "experiment": experiment, "data": "synthetic",
               "fraction": fraction, "seed": seed, "split_seed": 0, "protocol": protocol, "backbone": "compact",
               "epochs": {"pretext": EPOCHS, "downstream": EPOCHS}, **extra}
    if acc is None:
        results["error"] = f"RuntimeError: boom in {folder}"
    else:
        results.update(test_loss=loss, test_acc=acc)
    run_dir.mkdir(parents=True)
    (run_dir / "results.json").write_text(json.dumps(results))
    if acc is not None:
        if experiment != "supervised":
            _write_events(run_dir / "tb" / "pretext", "pretext", seed)
        _write_events(run_dir / "tb" / "downstream", "downstream", seed)


def _report(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ssl_lightning.report", str(folder), *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def _tables(markdown: str) -> dict[str, dict[str, dict[str, str]]]:
    """'## heading' -> row name -> column -> cell text, from the pipe tables in results.md."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    heading, header = None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading, header = line[3:].strip(), None
        elif line.startswith("|") and heading is not None and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                tables[heading] = {}
            else:
                tables[heading][cells[0]] = dict(zip(header[1:], cells[1:], strict=True))
    return tables


def _expected(losses: list[float], accs: list[float], failed: int = 0) -> str:
    """The cell format of the spec, from the raw numbers."""
    n = len(losses)
    acc_percent = [100 * a for a in accs]
    if n == 1:
        text = f"{losses[0]:.4f} / {acc_percent[0]:.2f}% (n=1)"
    else:
        text = (f"{statistics.mean(losses):.4f} ± {statistics.stdev(losses):.4f} / "
                f"{statistics.mean(acc_percent):.2f} ± {statistics.stdev(acc_percent):.2f}% (n={n})")
    return text + (f" [{failed} failed]" if failed else "")


def _values(folder_prefix: str) -> tuple[list[float], list[float]]:
    chosen = [r for r in RUNS if r[0].startswith(folder_prefix) and r[6] is not None]
    return [r[5] for r in chosen], [r[6] for r in chosen]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("sweep")
    for run in RUNS:
        _write_run(root, *run)
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{not json")
    out = root.parent / f"{root.name}_report"
    return root, out, _report(root, "--out", str(out))


def test_table_cells_are_mean_and_std_over_seeds(built):
    root, out, done = built
    assert done.returncode == 0, done.stderr
    tables = _tables((out / "results.md").read_text())
    finetune, linear = tables["synthetic — finetune"], tables["synthetic — linear"]
    assert list(finetune["5%"]) == ["Rotation", "SimCLR", "SimCLR (target+kidney)", "Supervised",
                                    "Supervised (init=torchvision)"]
    assert finetune["5%"]["Rotation"] == _expected(*_values("rot_f05"))
    assert finetune["5%"]["SimCLR"] == _expected(*_values("sim_f05"))
    assert "±" not in finetune["5%"]["SimCLR"]
    assert finetune["5%"]["SimCLR (target+kidney)"] == _expected(*_values("simk_f05"))
    assert finetune["5%"]["Supervised (init=torchvision)"] == _expected(*_values("supi_f05"))
    assert finetune["Supervised 100%"]["Supervised"] == _expected(*_values("sup_f100"))
    assert finetune["Supervised 100%"]["Rotation"] == "—"
    assert "100%" not in finetune  # supervised at 100% is the reference row, not a fraction row
    assert linear["50%"] == {"Rotation+Jitter": _expected(*_values("jit_f50"))}
    assert "synthetic — finetune" in done.stdout and _expected(*_values("rot_f05")) in done.stdout


def test_failed_runs_are_marked_counted_and_listed(built):
    root, out, done = built
    markdown = (out / "results.md").read_text()
    finetune = _tables(markdown)["synthetic — finetune"]
    assert finetune["25%"]["Rotation"] == _expected(*_values("rot_f25"), failed=1)
    assert finetune["5%"]["Supervised"] == "FAILED (2 of 2)"
    for folder in ("rot_f25_s2", "sup_f05_s0", "sup_f05_s1"):
        assert f"RuntimeError: boom in {folder}" in markdown
    assert "broken/results.json" in markdown and "broken" in done.stderr
    assert "- Rotation+Jitter, 50%: seed(s) 1 averaged more than once" in markdown


def test_csv_rows_hold_the_numbers_of_the_files(built):
    root, out, done = built
    with (out / "results.csv").open(newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == CSV_COLUMNS
        rows = {(r["protocol"], r["label"], float(r["fraction"])): r for r in reader}
    assert len(rows) == 8
    rotation = rows[("finetune", "Rotation", 0.25)]
    losses, accs = _values("rot_f25")
    assert (rotation["method"], int(rotation["n"]), int(rotation["n_failed"]), rotation["seeds"]) == (
        "rotation", 2, 1, "0;1")
    assert float(rotation["test_loss_mean"]) == pytest.approx(statistics.mean(losses), rel=1e-12)
    assert float(rotation["test_loss_std"]) == pytest.approx(statistics.stdev(losses), rel=1e-12)
    assert float(rotation["test_acc_mean"]) == pytest.approx(100 * statistics.mean(accs), rel=1e-12)
    assert float(rotation["test_acc_std"]) == pytest.approx(100 * statistics.stdev(accs), rel=1e-12)
    single = rows[("finetune", "SimCLR", 0.05)]
    assert single["test_acc_std"] == "" and int(single["n"]) == 1
    failed = rows[("finetune", "Supervised", 0.05)]
    assert (int(failed["n"]), int(failed["n_failed"]), failed["test_acc_mean"]) == (0, 2, "")
    assert rows[("finetune", "SimCLR (target+kidney)", 0.05)]["method"] == "simclr"


def test_figures_are_png_files(built):
    root, out, done = built
    names = {"accuracy_vs_fraction.png", "curves_synthetic_finetune_5pct.png", "curves_synthetic_finetune_25pct.png",
             "curves_synthetic_finetune_100pct.png", "curves_synthetic_linear_50pct.png"}
    assert names <= {p.name for p in out.glob("*.png")}
    for name in names:
        assert (out / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not list(root.glob("*.png"))  # --out was honoured


def test_curves_are_read_per_epoch_from_the_event_files(built):
    root, _, _ = built
    scalars = read_scalars(root / "rot_f05_s1" / "tb" / "downstream")
    assert scalars["downstream/val_acc"] == {float(e + 1): pytest.approx(_curve_value(1, e, 3)) for e in range(EPOCHS)}
    xs, ys = mean_curve([read_scalars(root / f"rot_f05_s{s}" / "tb" / "pretext")["pretext/train_loss"]
                         for s in range(3)])
    assert xs == [1.0, 2.0, 3.0]
    assert ys == pytest.approx([statistics.mean(_curve_value(s, e, 0) for s in range(3)) for e in range(EPOCHS)])
    assert read_scalars(root / "sup_f100_s0" / "tb" / "pretext") == {}


def test_folder_without_results_exits_2(tmp_path):
    done = _report(tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ") and len(done.stderr.strip().splitlines()) == 1
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("[]")
    done = _report(tmp_path)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "results.md").exists()


def test_report_on_a_real_multirun(cli, tmp_path):
    done = cli("+experiment=rotation,supervised", "data=synthetic", "profile=smoke", "data.fraction=0.25,0.5",
               multirun=True)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "multirun"
    results = [json.loads(p.read_text()) for p in sorted(sweep.rglob("results.json"))]
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    report = _report(sweep)
    assert report.returncode == 0, report.stderr
    table = _tables((sweep / "results.md").read_text())["synthetic — finetune"]
    names = {"rotation": "Rotation", "supervised": "Supervised"}
    for r in results:
        assert table[f"{round(100 * r['fraction'])}%"][names[r["experiment"]]] == _expected(
            [r["test_loss"]], [r["test_acc"]])
    with (sweep / "results.csv").open(newline="") as stream:
        rows = {(r["method"], float(r["fraction"])): r for r in csv.DictReader(stream)}
    for r in results:
        row = rows[(r["experiment"], r["fraction"])]
        assert float(row["test_loss_mean"]) == r["test_loss"] and float(row["test_acc_mean"]) == 100 * r["test_acc"]
    for name in ("curves_synthetic_finetune_25pct.png", "curves_synthetic_finetune_50pct.png"):
        assert (sweep / name).read_bytes()[:8] == PNG_SIGNATURE
