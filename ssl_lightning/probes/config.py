"""The frozen-feature probe keys of `downstream` (docs/guide.md, frozen probes): parsed, and refused in one line
where they cannot apply. `settings._downstream` merges these fields into `DownstreamSettings`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ssl_lightning.errors import UserError
from ssl_lightning.schema_fields import DOWNSTREAM, POSITIVE_LIST, setting

KNN = "knn"  # not a Classifier protocol: k-NN has no SGD head
SOLVERS = ("lbfgs", "sgd")
KNN_METRICS = ("cosine", "euclidean")
DEFAULT_PENALTY_GRID = tuple(10.0 ** e for e in range(-6, 6))  # C = 1e-6 ... 1e5, one per decade
# The C values accepted: below 1e-12 the weights on standardised features are ~1e-14 or nothing (a constant
# prediction), and below about 1e-150 the ridge term overflows L-BFGS into NaN weights (issue 32: C=1e-200 wrote
# an all-NaN probe with status ok); above 1e12 the fit is the unpenalised one (measured: weights equal to 1e-9
# from C=1e8 on). A C inside the range that still diverges is skipped at fit time (`diverged_candidates`).
MIN_PENALTY, MAX_PENALTY = 1e-12, 1e12


@dataclass(frozen=True)
class ProbeSettings:
    """The frozen-feature probe keys of `downstream:` (conf/downstream/linear.yaml, knn.yaml presets)."""

    solver: str | None = setting(None, "|".join(SOLVERS), "downstream=linear: lbfgs (logistic regression on cached "
                                 "features) | sgd (the head through the Trainer); null = sgd", DOWNSTREAM)
    penalty_grid: tuple[float, ...] = setting(DEFAULT_PENALTY_GRID, POSITIVE_LIST, "lbfgs: scikit-learn's C values "
                                              "(loss = C * sum of cross-entropies + 0.5 ||W||^2), chosen on "
                                              "validation, fitted smallest first with warm starts", DOWNSTREAM)
    max_iter: int = setting(100, ">=1", "lbfgs: L-BFGS iterations per penalty at most (scikit-learn's default)",
                            DOWNSTREAM)
    penalty_patience: int | None = setting(3, ">=1", "lbfgs: stop the penalty path after this many values without "
                                           "a better validation metric (null: all)", DOWNSTREAM)
    k: int = setting(20, ">=1", "knn: neighbours", DOWNSTREAM)
    k_grid: tuple[int, ...] | None = setting(None, POSITIVE_LIST, "knn: k chosen on validation from these (overrides "
                                             "k), e.g. [10,20,50]", DOWNSTREAM)
    temperature: float = setting(0.07, ">0", "knn: vote weight exp(similarity / T)", DOWNSTREAM)
    metric: str = setting("cosine", "|".join(KNN_METRICS), "knn: cosine (L2-normalised features) | euclidean "
                          "(standardised features, similarity = -distance)", DOWNSTREAM)


PROBE_DEFAULTS = ProbeSettings()


def is_frozen(protocol: str, solver: str | None) -> bool:
    """k-NN always, the linear protocol with the L-BFGS solver: probes on cached features (frozen_stage.py)."""
    return protocol == KNN or (protocol == "linear" and solver == "lbfgs")


def _solver(values: dict[str, Any], protocol: str) -> str | None:
    """lbfgs | sgd under linear (absent: sgd, the head before this key existed), sgd under finetune, None for k-NN."""
    solver = values.get("solver")
    if protocol == "linear":
        solver = "sgd" if solver is None else solver
        if solver not in SOLVERS:
            raise UserError(f"downstream.solver={solver!r} unknown; valid: {', '.join(SOLVERS)}")
        return solver
    if protocol == KNN:
        if solver is not None:
            raise UserError(f"downstream.solver={solver} applies to downstream=linear; downstream=knn fits nothing")
        return None
    if solver not in (None, "sgd"):
        raise UserError(f"downstream.solver={solver} fits a probe on frozen features: it needs downstream=linear "
                        f"(downstream={protocol} trains the encoder by SGD through the Trainer)")
    return "sgd"


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"downstream.{name}={value} must be a whole number >= 1")
    return value


def _penalty_grid(value: Any) -> tuple[float, ...]:
    if value is None:
        return DEFAULT_PENALTY_GRID
    grid = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not grid or any(isinstance(c, bool) or not isinstance(c, int | float) or not c > 0 for c in grid):
        raise UserError(f"downstream.penalty_grid={list(grid)} must be a non-empty list of positive C values "
                        "(scikit-learn's LogisticRegression C), e.g. downstream.penalty_grid=[0.01,0.1,1]")
    outside = [c for c in grid if not MIN_PENALTY <= c <= MAX_PENALTY]
    if outside:
        raise UserError(f"downstream.penalty_grid={list(grid)}: C={outside[0]:g} is outside [{MIN_PENALTY:g}, "
                        f"{MAX_PENALTY:g}], where the fit gives non-finite or vanishing weights; use values in that "
                        "range (the default grid is 1e-6 ... 1e5)")
    return tuple(float(c) for c in grid)


def _k_grid(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    grid = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not grid:
        raise UserError("downstream.k_grid=[] must list at least one k, e.g. downstream.k_grid=[10,20,50] or null")
    return tuple(_whole("k_grid", k) for k in grid)


PROBE_KEYS = frozenset(f.name for f in fields(ProbeSettings))


def frozen_probe_fields(values: dict[str, Any], protocol: str, head: str) -> dict[str, Any]:
    """The `DownstreamSettings` fields of the frozen probes from the `downstream` section."""
    solver = _solver(values, protocol)
    knn_keys = sorted({"k", "k_grid", "metric"} & set(values))
    if protocol != KNN and knn_keys:
        raise UserError(f"downstream.{knn_keys[0]} applies to downstream=knn only (this run: downstream={protocol})")
    if solver == "lbfgs" and head != "linear":
        raise UserError(f"downstream.head={head} needs downstream.solver=sgd: L-BFGS fits a linear probe")
    if solver == "lbfgs" and values.get("lr_grid") is not None:
        raise UserError("downstream.lr_grid picks the SGD learning rate; with downstream.solver=lbfgs the penalty "
                        "comes from downstream.penalty_grid (or use downstream.solver=sgd)")
    values = {**asdict(PROBE_DEFAULTS), **{k: v for k, v in values.items() if k in PROBE_KEYS}}
    metric = values["metric"]
    if metric not in KNN_METRICS:
        raise UserError(f"downstream.metric={metric!r} unknown; valid: {', '.join(KNN_METRICS)}")
    patience = values["penalty_patience"]
    return {"solver": solver, "penalty_grid": _penalty_grid(values["penalty_grid"]),
            "max_iter": _whole("max_iter", values["max_iter"]),
            "penalty_patience": None if patience is None else _whole("penalty_patience", patience),
            "k": _whole("k", values["k"]), "k_grid": _k_grid(values["k_grid"]),
            "temperature": float(values["temperature"]), "metric": metric}


def check_raw_pixels(protocol: str, solver: str | None, probe_layer: str | int) -> None:
    """The raw-pixel arm has no encoder: only the frozen-feature probes apply to it."""
    if not is_frozen(protocol, solver):
        named = f" downstream.solver={solver}" if protocol == "linear" else ""
        raise UserError(f"+experiment=raw_pixels has no encoder to train (downstream={protocol}{named}); "
                        "use a frozen protocol: downstream=linear (solver lbfgs) or downstream=knn")
    if probe_layer not in ("last", "best"):
        raise UserError(f"downstream.probe_layer={probe_layer}: raw pixels have no layers; use last")
