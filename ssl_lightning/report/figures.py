"""PNG figures: the study's four curve panels per label budget, and the chosen test metric versus the budget."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ssl_lightning.report.aggregate import Cell, by_group  # noqa: E402
from ssl_lightning.report.budget import FRACTION  # noqa: E402
from ssl_lightning.report.curves import Series, mean_curve, read_scalars  # noqa: E402
from ssl_lightning.report.metric_choice import words_for_key  # noqa: E402

# (title, stage folder under tb/, train tag, val tag, shown in percent)
PANELS = (
    ("Pretext loss", "pretext", "pretext/train_loss", "pretext/val_loss", False),
    ("Pretext accuracy", "pretext", "pretext/train_acc", "pretext/val_acc", True),
    ("Downstream loss", "downstream", "downstream/train_loss", "downstream/val_loss", False),
    ("Downstream accuracy", "downstream", "downstream/train_acc", "downstream/val_acc", True),
)

# The validation monitors (the k-NN one reads validation labels; both select nothing), extra panels when logged.
MONITOR_PANELS = (
    ("Pretext k-NN accuracy (val, k=20, monitor only)", "pretext", None, "pretext/val_knn_acc", True),
    ("Pretext RankMe (val, effective rank)", "pretext", None, "pretext/val_rankme", False),
)

STYLES = {"train": ("-", "o"), "val": ("--", "x")}  # line style and marker (a one-epoch curve is a single point)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _colours(cells: list[Cell]) -> dict[str, str]:
    """The same colour for a column in every figure."""
    orders = {c.label: c.column_order for c in cells}
    palette = matplotlib.colormaps["tab10"].colors
    return {label: matplotlib.colors.to_hex(palette[i % len(palette)])
            for i, label in enumerate(sorted(orders, key=orders.__getitem__))}


class _CurveCache:
    """Event files are read once per run folder, however many figures use them."""

    def __init__(self) -> None:
        self._scalars: dict[Path, dict[str, Series]] = {}

    def scalars(self, folder: Path) -> dict[str, Series]:
        if folder not in self._scalars:
            self._scalars[folder] = read_scalars(folder)
        return self._scalars[folder]


def _panels(cells: list[Cell], cache: _CurveCache) -> tuple:
    """The study's four panels plus each monitor panel that some run of these cells logged."""
    runs = [run for cell in cells for run in cell.ok_runs]
    present = [panel for panel in MONITOR_PANELS
               if any(panel[3] in cache.scalars(run.run_dir / "tb" / panel[1]) for run in runs)]
    return (*PANELS, *present)


def _curves_figure(cells: list[Cell], title: str, colours: dict[str, str], cache: _CurveCache, path: Path) -> None:
    panels = _panels(cells, cache)
    columns = 2 if len(panels) == 4 else 3
    figure = Figure(figsize=(6 * columns, 9), layout="constrained")
    all_axes = figure.subplots(2, columns).ravel()
    axes = all_axes[: len(panels)]
    for unused in all_axes[len(panels):]:
        unused.set_visible(False)
    handles = []
    for cell in cells:
        runs = cell.ok_runs
        if not runs:
            continue
        colour = colours[cell.label]
        handles.append(Line2D([], [], color=colour, label=f"{cell.label} (mean of {len(runs)} seed(s))"))
        for ax, (_, stage, train_tag, val_tag, percent) in zip(axes, panels, strict=True):
            scalars = [cache.scalars(run.run_dir / "tb" / stage) for run in runs]
            for tag, (style, marker) in ((train_tag, STYLES["train"]), (val_tag, STYLES["val"])):
                xs, ys = mean_curve([s[tag] for s in scalars if tag in s]) if tag else ([], [])
                if xs:
                    scale = 100.0 if percent else 1.0
                    ax.plot(xs, [scale * y for y in ys], linestyle=style, marker=marker, color=colour)
    for ax, (name, _, _, val_tag, percent) in zip(axes, panels, strict=True):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)" if percent else "effective rank" if "rankme" in val_tag else "loss")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "no curves logged", ha="center", va="center", transform=ax.transAxes)
    handles += [Line2D([], [], color="black", linestyle=style, marker=marker, label=name)
                for name, (style, marker) in STYLES.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    figure.suptitle(f"{title} — curves are the mean over seeds (solid/o train, dashed/x val)")
    figure.savefig(path, dpi=100)


def curve_figures(cells: list[Cell], out_dir: Path) -> list[Path]:
    """One PNG per (data, protocol, budget) with the pretext/downstream loss and accuracy panels."""
    colours, cache, written = _colours(cells), _CurveCache(), []
    for (data, protocol), group in by_group(cells).items():
        for budget in sorted({c.budget for c in group}, key=lambda b: b.order):
            chosen = [c for c in group if c.budget == budget]
            path = out_dir / f"curves_{_safe(data)}_{_safe(protocol)}_{_safe(budget.file_part)}.png"
            _curves_figure(chosen, f"{data} · {protocol} · {budget.text} labels", colours, cache, path)
            written.append(path)
    return written


def figure_name(metric_key: str) -> str:
    """accuracy_vs_fraction.png for test accuracy (the study's name), '<metric>_vs_budget.png' otherwise."""
    if metric_key == "test_acc":
        return "accuracy_vs_fraction.png"
    return f"{metric_key.removeprefix('test_')}_vs_budget.png"


def accuracy_vs_fraction(cells: list[Cell], path: Path) -> Path:
    """The chosen metric (two-level mean and 95% CI over seeds) against the label budget, one panel per (data,
    protocol). Fractions sit at their percent, counts per class at their count; a panel that mixes both kinds
    places the budgets side by side in order."""
    groups = by_group(cells)
    colours = _colours(cells)
    metric = words_for_key(cells[0].metric_key) if cells else "test accuracy"
    figure = Figure(figsize=(7 * len(groups), 5), layout="constrained")
    axes = figure.subplots(1, len(groups), squeeze=False)[0]
    for ax, ((data, protocol), group) in zip(axes, groups.items(), strict=True):
        budgets = sorted({c.budget for c in group}, key=lambda b: b.order)
        kinds = {b.kind for b in budgets}
        if len(kinds) == 1:
            position = {b: (100 * b.value if b.kind == FRACTION else b.value) for b in budgets}
        else:
            position = {b: float(i) for i, b in enumerate(budgets)}
        for label in [name for name in colours if any(c.label == name for c in group)]:
            estimates = sorted(((position[c.budget], c.estimate) for c in group if c.label == label and c.n),
                               key=lambda item: item[0])
            if not estimates:
                continue
            halves = [0.0 if e.high is None or e.mean is None else e.high - e.mean for _, e in estimates]
            ax.errorbar([x for x, _ in estimates], [e.mean for _, e in estimates], yerr=halves, color=colours[label],
                        marker="o", capsize=4, label=label)
        ax.set_xticks([position[b] for b in budgets], [b.text for b in budgets])
        ax.set_title(f"{data} · {protocol}")
        ax.set_xlabel("label fraction" if kinds == {FRACTION} else "labels")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(f"{metric.capitalize()} vs labels (mean over seeds, splits of a seed averaged first; bars: "
                    "95% CI, t with seeds-1 df; none from one seed)")
    figure.savefig(path, dpi=100)
    return path
