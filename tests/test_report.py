"""The sweep report end to end: results.json + TensorBoard event files on disk -> `python -m ssl_lightning.report`."""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest

from ssl_lightning.report.__main__ import main as report_main
from ssl_lightning.report.curves import mean_curve, read_scalars
from tests.conftest import call_main
from tests.helpers import shared_cells

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 3
CSV_COLUMNS = ["data", "protocol", "method", "label", "fraction", "n", "n_failed", "test_loss_mean", "test_loss_std",
               "test_acc_mean", "test_acc_std", "seeds", "test_acc_ci_low", "test_acc_ci_high", "test_loss_ci_low",
               "test_loss_ci_high", "split_seeds", "labels_per_class", "n_seeds", "splits_per_seed", "metric",
               "metric_mean", "metric_std", "metric_ci_low", "metric_ci_high"]
FINETUNE, LINEAR = "synthetic — finetune (test accuracy)", "synthetic — linear (test accuracy)"
# two-sided 95% quantiles of Student's t, closed forms: df=1 is Cauchy, df=2 has CDF 1/2 + t / (2 sqrt(2 + t^2))
T95 = {1: math.tan(0.475 * math.pi), 2: math.sqrt(2 * 0.95**2 / (1 - 0.95**2))}

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
    """`python -m ssl_lightning.report <folder> ...` through its main(argv), in this process (the real process runs
    once, on the shared sweep: tests/conftest.py)."""
    return call_main(report_main, [str(folder), *extra], REPO)


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


def _ci(values: list[float]) -> tuple[float, float]:
    half = T95[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return statistics.mean(values) - half, statistics.mean(values) + half


def _expected(losses: list[float], accs: list[float], failed: int = 0) -> str:
    """The cell format of the spec, from the raw numbers: mean loss / mean accuracy [95% CI] (n)."""
    n = len(losses)
    acc_percent = [100 * a for a in accs]
    if n == 1:
        text = f"{losses[0]:.4f} / {acc_percent[0]:.2f}% (n=1)"
    else:
        low, high = _ci(acc_percent)
        text = f"{statistics.mean(losses):.4f} / {statistics.mean(acc_percent):.2f}% [{low:.2f}, {high:.2f}] (n={n})"
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
    finetune, linear = tables[FINETUNE], tables[LINEAR]
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
    # seed 1 was run twice with the same split seed: averaged within its seed, the interval is over 2 seeds
    assert linear["50%"] == {"Rotation+Jitter": _expected([0.2897, (0.31 + 0.33) / 2], [0.894, (0.87 + 0.86) / 2])
                             .replace("(n=2)", "(n=3: 2 seeds)")}
    assert FINETUNE in done.stdout and _expected(*_values("rot_f05")) in done.stdout


def test_failed_runs_are_marked_counted_and_listed(built):
    root, out, done = built
    markdown = (out / "results.md").read_text()
    finetune = _tables(markdown)[FINETUNE]
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
    low, high = _ci([100 * a for a in accs])
    assert (float(rotation["test_acc_ci_low"]), float(rotation["test_acc_ci_high"])) == (
        pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert rotation["split_seeds"] == "0;0"
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


def test_report_on_a_real_multirun(shared_sweep):
    sweep = shared_sweep["root"] / "multirun"
    results = shared_cells(shared_sweep, ("rotation", "supervised"))
    assert len(results) == 4 and all(r["status"] == "ok" for r in results)
    report = shared_sweep["report"]
    assert report["returncode"] == 0, report["stderr"]
    table = _tables((sweep / "results.md").read_text())[FINETUNE]
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


# Statistics: (folder, experiment, protocol, seed, split seed, test_acc, downstream.lr, extra config) at 25% labels
STATS_RUNS = [
    ("sup_s0", "supervised", "finetune", 0, 0, 0.70, 0.05, {}),
    ("sup_s1", "supervised", "finetune", 1, 1, 0.74, 0.05, {}),
    ("sup_s2", "supervised", "finetune", 2, 2, 0.71, 0.05, {"pretext": {"epochs": 5}}),  # unused by supervised
    ("sim_s0", "simclr", "finetune", 0, 0, 0.78, 0.05, {}),
    ("sim_s1", "simclr", "finetune", 1, 1, 0.80, 0.05, {}),
    ("sim_s2", "simclr", "finetune", 2, 2, 0.79, 0.05, {}),
    ("simlr_s0", "simclr", "finetune", 0, 0, 0.60, 0.01, {}),
    ("simlr_s1", "simclr", "finetune", 1, 1, 0.66, 0.01, {}),
    ("rot_s0", "rotation", "finetune", 0, 0, 0.72, 0.05, {}),
    ("rot_s1", "rotation", "finetune", 1, 0, 0.75, 0.05, {}),
    ("rot_s2", "rotation", "finetune", 2, 0, 0.73, 0.05, {"simclr": {"temperature": 0.2}}),  # unused by rotation
    ("jit_s0", "rotation_jitter", "finetune", 0, 0, 0.77, 0.05, {}),
    ("lin_sup_s0", "supervised", "linear", 0, 0, 0.30, 0.1, {}),
    ("lin_sup_s1", "supervised", "linear", 1, 1, 0.34, 0.1, {}),
    ("lin_sim_s0", "simclr", "linear", 0, 0, 0.70, 0.1, {}),
    ("lin_sim_s1", "simclr", "linear", 1, 1, 0.75, 0.1, {}),
]


def _config(folder: str, experiment: str, protocol: str, seed: int, split_seed: int, lr: float, extra: dict) -> dict:
    """A resolved config shaped like the real one; paths differ per run, as they do in a sweep."""
    config = {"experiment": experiment, "seed": seed, "paths": {"cache": f"/caches/{folder}"},
              "data": {"name": "synthetic", "fraction": 0.25, "split_seed": split_seed, "val_split": 0.1},
              "downstream": {"protocol": protocol, "lr": lr, "epochs": 10}, "pretext": {"epochs": 2},
              "simclr": {"temperature": 0.5}, "rotation": {"jitter_strength": 0.5}}
    for section, values in extra.items():
        config[section] = {**config[section], **values}
    return config


@pytest.fixture(scope="module")
def stats_report(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("stats")
    for index, (folder, experiment, protocol, seed, split_seed, acc, lr, extra) in enumerate(STATS_RUNS):
        keys = {"split_seed": split_seed, "config": _config(folder, experiment, protocol, seed, split_seed, lr, extra),
                "best_val_acc": acc + 0.01, "best_epoch": 3 + index % 4}
        if folder == "sim_s1":
            keys["chosen_lr"] = 0.05
        _write_run(root, folder, experiment, protocol, 0.25, seed, 1.0 - acc, acc, keys)
    return root, _report(root)


def _accs(*folders: str) -> list[float]:
    by_folder = {r[0]: 100 * r[5] for r in STATS_RUNS}
    return [by_folder[f] for f in folders]


def _comparisons(root: Path) -> dict[tuple[str, str], dict[str, str]]:
    with (root / "comparisons.csv").open(newline="") as stream:
        return {(r["protocol"], r["label"]): r for r in csv.DictReader(stream)}


def test_configurations_that_differ_are_not_averaged(stats_report):
    root, done = stats_report
    assert done.returncode == 0, done.stderr
    table = _tables((root / "results.md").read_text())[FINETUNE]["25%"]
    assert list(table) == ["Rotation", "Rotation+Jitter", "SimCLR [downstream.lr=0.01]",
                           "SimCLR [downstream.lr=0.05]", "Supervised"]
    assert table["SimCLR [downstream.lr=0.01]"] == _expected([0.40, 0.34], [0.60, 0.66])
    assert table["SimCLR [downstream.lr=0.05]"] == _expected([0.22, 0.20, 0.21], [0.78, 0.80, 0.79])
    assert table["Supervised"].endswith("(n=3)")  # pretext.epochs does not touch a supervised run: one column
    assert table["Rotation"].endswith("(n=3)")  # nor simclr.temperature a rotation run


def test_linear_table_calls_the_supervised_column_a_random_encoder(stats_report):
    root, _ = stats_report
    markdown = (root / "results.md").read_text()
    assert list(_tables(markdown)[LINEAR]["25%"]) == ["SimCLR", "Random encoder"]
    assert "Supervised" not in _tables(markdown)[LINEAR]["25%"]
    assert '"Random encoder", is a randomly initialised, untrained encoder probed linearly' in markdown
    assert _comparisons(root)[("linear", "SimCLR")]["baseline"] == "Random encoder"


def test_paired_comparison_matches_a_hand_computation(stats_report):
    root, _ = stats_report
    row = _comparisons(root)[("finetune", "SimCLR [downstream.lr=0.05]")]
    diffs = [a - b for a, b in zip(_accs("sim_s0", "sim_s1", "sim_s2"), _accs("sup_s0", "sup_s1", "sup_s2"),
                                   strict=True)]  # 8, 6, 8 points
    mean, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(3)
    assert (row["test"], row["baseline"], row["n_method"], row["n_baseline"]) == ("paired t", "Supervised", "3", "3")
    assert float(row["diff_points"]) == pytest.approx(mean, rel=1e-9)
    assert float(row["diff_ci_low"]) == pytest.approx(mean - T95[2] * se, rel=1e-9)
    assert float(row["diff_ci_high"]) == pytest.approx(mean + T95[2] * se, rel=1e-9)
    t = mean / se
    assert float(row["p_value"]) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)  # df = 2 closed form
    linear = _comparisons(root)[("linear", "SimCLR")]  # df = 1: two-sided p = 1 - (2/pi) atan(|t|)
    d = [a - b for a, b in zip(_accs("lin_sim_s0", "lin_sim_s1"), _accs("lin_sup_s0", "lin_sup_s1"), strict=True)]
    t1 = statistics.mean(d) / (statistics.stdev(d) / math.sqrt(2))
    assert linear["test"] == "paired t" and float(linear["p_value"]) == pytest.approx(
        1 - 2 / math.pi * math.atan(abs(t1)), rel=1e-9)


def test_pairing_by_seed_on_shared_replicates_and_no_test_below_two_seeds(stats_report):
    root, _ = stats_report
    rows = _comparisons(root)
    rotation = rows[("finetune", "Rotation")]  # split seed fixed at 0: only seed 0 shares its split seed
    a, b = _accs("rot_s0", "rot_s1", "rot_s2"), _accs("sup_s0", "sup_s1", "sup_s2")
    d = [x - y for x, y in zip(a, b, strict=True)]  # paired by seed (one split each)
    assert (rotation["test"], float(rotation["df"]), rotation["paired_seeds"]) == ("paired t (by seed)", 2.0, "3")
    assert float(rotation["diff_points"]) == pytest.approx(statistics.mean(d), rel=1e-9)
    assert float(rotation["se"]) == pytest.approx(statistics.stdev(d) / math.sqrt(3), rel=1e-9)
    lr = rows[("finetune", "SimCLR [downstream.lr=0.01]")]  # 2 of the baseline's 3 pairs: paired on those 2
    d2 = [x - y for x, y in zip(_accs("simlr_s0", "simlr_s1"), _accs("sup_s0", "sup_s1"), strict=True)]
    assert (lr["test"], float(lr["df"]), lr["left_out"]) == ("paired t", 1.0, "baseline seed 2 split 2")
    assert float(lr["diff_points"]) == pytest.approx(statistics.mean(d2), rel=1e-9)
    jitter = rows[("finetune", "Rotation+Jitter")]
    assert (jitter["test"], jitter["p_value"], jitter["holm_p_value"], jitter["significant"]) == ("", "", "", "")
    assert jitter["note"] == "no test: n < 2 (n=1 vs 3 seeds)" and jitter["holm_family"] == "4"
    assert float(jitter["diff_points"]) == pytest.approx(77 - statistics.mean(b), rel=1e-9)


def test_holm_across_the_table_and_the_asterisk(stats_report):
    root, _ = stats_report
    rows = [r for r in _comparisons(root).values() if r["protocol"] == "finetune" and r["p_value"]]
    assert len(rows) == 3  # tested; the family is 4: Rotation+Jitter (one run) is planned but untested
    ordered = sorted(rows, key=lambda r: float(r["p_value"]))
    running = 0.0
    for rank, row in enumerate(ordered):
        running = max(running, min(1.0, (4 - rank) * float(row["p_value"])))
        assert float(row["holm_p_value"]) == pytest.approx(running, rel=1e-12)
        assert row["significant"] == ("yes" if running < 0.05 else "no")
    assert ordered[0]["label"] == "SimCLR [downstream.lr=0.05]" and ordered[0]["significant"] == "yes"
    markdown = (root / "results.md").read_text()
    heading = "## synthetic — finetune: each method against Supervised"
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    marked = {cells[1]: cells[3] for cells in lines[1:]}  # method -> difference (points)
    by_label = {r["label"]: r for r in rows}
    best = "SimCLR [downstream.lr=0.05]"
    assert marked[best] == f"{float(by_label[best]['diff_points']):+.2f}*"
    assert marked["Rotation"] == f"{float(by_label['Rotation']['diff_points']):+.2f}"  # not significant: no mark
    assert "Holm p corrects over the 4 planned comparison(s) of this table, 3 of them tested; * marks" in section
    assert "- 25%, Rotation+Jitter: no test: n < 2 (n=1 vs 3 seeds)" in section  # named, not dropped
    best_row = by_label[best]
    assert f"the difference lies in [{float(best_row['diff_ci_low']):+.2f}, {float(best_row['diff_ci_high']):+.2f}]" \
        in section


def test_runs_csv_has_one_row_per_run(stats_report):
    root, _ = stats_report
    with (root / "results_runs.csv").open(newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ["experiment", "label", "data", "protocol", "fraction", "seed", "split_seed",
                                     "status", "test_acc", "test_loss", "best_val_acc", "best_epoch", "chosen_lr",
                                     "run_folder", "error", "labels_per_class", "test_balanced_acc",
                                     "test_macro_f1", "test_group_acc", "test_group_balanced_acc", "test_folds",
                                     "num_test", "select", "selected_on", "chosen_C", "chosen_k", "probe_layer",
                                     "best_step", "downstream_steps", "labeled_images_seen"]
        rows = {r["run_folder"]: r for r in reader}
    assert set(rows) == {r[0] for r in STATS_RUNS}
    for index, (folder, experiment, protocol, seed, split_seed, acc, _, _) in enumerate(STATS_RUNS):
        row = rows[folder]
        assert (row["experiment"], row["protocol"], float(row["fraction"]), int(row["seed"]),
                int(row["split_seed"]), row["status"]) == (experiment, protocol, 0.25, seed, split_seed, "ok")
        assert float(row["test_acc"]) == acc and float(row["test_loss"]) == 1.0 - acc
        assert float(row["best_val_acc"]) == acc + 0.01 and int(row["best_epoch"]) == 3 + index % 4
        assert row["chosen_lr"] == ("0.05" if folder == "sim_s1" else "")
    assert rows["simlr_s0"]["label"] == "SimCLR [downstream.lr=0.01]"
    assert rows["lin_sup_s0"]["label"] == "Random encoder"


def test_comparisons_name_config_differences_between_method_and_baseline(stats_report):
    root, _ = stats_report
    rows = _comparisons(root)
    assert rows[("finetune", "SimCLR [downstream.lr=0.01]")]["config_differences"] == "downstream.lr=0.01 vs 0.05"
    assert rows[("finetune", "SimCLR [downstream.lr=0.05]")]["config_differences"] == ""
    assert rows[("finetune", "Rotation")]["config_differences"] == ""  # simclr.* and pretext.* are not shared keys
    markdown = (root / "results.md").read_text()
    assert "- 25%, SimCLR [downstream.lr=0.01]: downstream.lr=0.01 vs 0.05" in markdown


# Newer results.json keys: other metrics, k-NN, a budget by count, several label splits per seed.
# (folder, experiment, protocol, seed, split seed, labels_per_class or None, fraction, test_acc, balanced acc)
METRIC_RUNS = [
    *((f"knn_sup_s{s}", "supervised", "knn", s, s, 10, None, 0.50 + 0.01 * s, 0.40 + 0.02 * s) for s in range(3)),
    *((f"knn_sim_s{s}", "simclr", "knn", s, s, 10, None, 0.70 + 0.01 * s, 0.60 + 0.03 * s) for s in range(3)),
    *((f"lin_sim_s{s}_{k}", "simclr", "linear", s, k, None, 0.05, 0.70, 0.60 + 0.02 * s + 0.01 * k)
      for s in range(2) for k in range(2)),
]


def _balanced(folder: str) -> float:
    return 100 * next(r[8] for r in METRIC_RUNS if r[0] == folder)


@pytest.fixture(scope="module")
def metric_report(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("metrics")
    for folder, experiment, protocol, seed, split, per_class, fraction, acc, balanced in METRIC_RUNS:
        results = {"status": "ok", "experiment": experiment, "data": "patients", "protocol": protocol,
                   "fraction": fraction, "labels_per_class": per_class, "seed": seed, "split_seed": split,
                   "test_acc": acc, "test_balanced_acc": balanced, "test_group_acc": acc,
                   "test_group_balanced_acc": balanced, "test_confusion": [[1, 0], [0, 1]]}
        if protocol != "knn":
            results["test_loss"] = 1.0 - acc  # a k-NN probe has no loss
        if folder.startswith("knn_sim"):
            results["test_macro_f1"] = balanced  # only some runs have it
        (root / folder).mkdir()
        (root / folder / "results.json").write_text(json.dumps(results))
    return root, _report(root, "--metric", "balanced_acc", "--embedding-points", "0"), _report(
        root, "--metric", "macro_f1")


def test_metric_option_drives_tables_comparisons_and_figures(metric_report):
    root, done, _ = metric_report
    assert done.returncode == 0, done.stderr
    markdown = (root / "results.md").read_text()
    tables = _tables(markdown)
    knn = tables["patients — knn (test balanced accuracy)"]
    assert list(knn) == ["10/class"] and list(knn["10/class"]) == ["SimCLR", "Random encoder"]
    values = [_balanced(f"knn_sim_s{s}") for s in range(3)]
    low, high = _ci(values)
    assert knn["10/class"]["SimCLR"] == f"— / {statistics.mean(values):.2f}% [{low:.2f}, {high:.2f}] (n=3)"
    assert "Shown: test balanced accuracy (`test_balanced_acc`), percent." in markdown
    assert "untrained encoder probed by k-NN" in markdown
    assert (root / "balanced_acc_vs_budget.png").read_bytes()[:8] == PNG_SIGNATURE
    rows = _comparisons(root)
    knn_row = rows[("knn", "SimCLR")]
    d = [_balanced(f"knn_sim_s{s}") - _balanced(f"knn_sup_s{s}") for s in range(3)]
    assert (knn_row["metric"], knn_row["labels_per_class"], knn_row["fraction"]) == ("test_balanced_acc", "10", "")
    assert float(knn_row["diff_points"]) == pytest.approx(statistics.mean(d), rel=1e-9)
    assert float(knn_row["detectable_diff_points_holm"]) >= float(knn_row["detectable_diff_points"]) > 0
    assert "patients — knn: each method against Random encoder (test balanced accuracy)" in markdown


def test_several_splits_per_seed_are_averaged_before_the_interval(metric_report):
    root, _, _ = metric_report
    linear = _tables((root / "results.md").read_text())["patients — linear (test balanced accuracy)"]
    seed_means = [statistics.mean(_balanced(f"lin_sim_s{s}_{k}") for k in range(2)) for s in range(2)]
    low, high = _ci(seed_means)  # t over the 2 seeds' means (df = 1), not over the 4 runs
    assert linear["5%"]["SimCLR"] == (f"0.3000 / {statistics.mean(seed_means):.2f}% [{low:.2f}, {high:.2f}] "
                                      "(n=4: 2 seeds x 2 splits)")
    with (root / "results.csv").open(newline="") as stream:
        row = next(r for r in csv.DictReader(stream) if r["protocol"] == "linear")
    assert (row["n"], row["n_seeds"], row["splits_per_seed"]) == ("4", "2", "2")
    assert float(row["metric_ci_low"]) == pytest.approx(low, rel=1e-9)


def test_a_metric_missing_from_older_runs_is_one_line(metric_report):
    root, _, missing = metric_report
    assert missing.returncode == 2
    line = missing.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("error: --metric macro_f1: 7 of 10 successful run(s) lack test_macro_f1")


def test_val_seed_is_a_replicate_axis_not_a_variant():
    """data.val_seed follows `seed`: a seed sweep must stay one column, not one column per val_seed."""
    from ssl_lightning.report.configs import varies_by_design

    assert varies_by_design("data.val_seed") and varies_by_design("data.split_seed")
    assert not varies_by_design("data.group_by")


def test_the_raw_pixel_arm_is_named_raw_pixels_in_tables():
    from ssl_lightning.report.columns import display

    assert display("raw_pixels", "linear") == "Raw pixels"
    assert display("supervised", "knn") == "Random encoder"
