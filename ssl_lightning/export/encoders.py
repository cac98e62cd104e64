"""`python -m ssl_lightning.export <run folder | sweep folder | store key> [--out DIR]`: encoders for plain PyTorch.

Per encoder a folder with `encoder.pt` (a plain state dict) and `card.json` (what made it and how to load it):

- `pretext_<store key>/`: the pretext encoder from the store (`<paths.cache>/pretext/<key>/`), once per key;
- `classifier_<run folder name>/`: the encoder part of the run's tested classifier (`checkpoints/best.ckpt`).

A frozen-probe run (k-NN, L-BFGS linear) trains no classifier and keeps no `best.ckpt`: its encoder is the pretext
encoder (exported as above), the backbone.init file, or nothing (raw pixels, a random encoder); what it lacks is one
`note:` line and the other runs of a sweep are exported all the same. Any other run without a readable
`checkpoints/best.ckpt` is refused (one line, exit code 2) unless `--encoder-only` asks for the pretext encoder
alone; unreadable files are named in one line. Everything is written into a temporary folder
next to the output and moved into place at the end, so a failure leaves no half export.

Keys have no `body.` prefix: a ResNet encoder loads into `torchvision.models.resnet18/50` with only `fc.*` missing
(CIFAR-stem and grey-image variants: the card says which layers to replace first), the compact backbone into
`build_encoder(...).body`, and `backbone.init=<folder>/encoder.pt` reads any of them back.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ssl_lightning.atomic import write_json, write_torch
from ssl_lightning.errors import OneLineParser, UserError
from ssl_lightning.probes.config import is_frozen

STORE_KEY = re.compile(r"^[0-9a-f]{16}$")
FEATURE_DIMS = {"resnet18": 512, "resnet50": 2048}


@dataclass
class Exported:
    folder: Path
    card: dict[str, Any] = field(default_factory=dict)


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose key starts with `prefix`, without it, detached on the CPU."""
    return {key[len(prefix):]: value.detach().cpu().clone() for key, value in state.items() if key.startswith(prefix)}


def infer_architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Backbone name, input channels, stem and feature size read from the weights themselves."""
    if "conv1.weight" in state:
        conv = state["conv1.weight"]
        name = "resnet50" if any(k.startswith("layer1.0.conv3.") for k in state) else "resnet18"
        stem = "cifar" if conv.shape[-1] == 3 else "imagenet"
        return {"backbone": name, "in_channels": int(conv.shape[1]), "stem": stem, "feature_dim": FEATURE_DIMS[name]}
    if "0.weight" in state:
        conv = state["0.weight"]
        blocks = len({key.split(".")[0] for key in state if key.split(".")[0].isdigit() and ".conv1." in key})
        width = int(conv.shape[0])
        return {"backbone": "compact", "in_channels": int(conv.shape[1]), "stem": None, "feature_dim": 4 * width,
                "width": width, "blocks": max(1, blocks // 3)}
    raise UserError("the weights are neither a ResNet nor the compact backbone; nothing to export")


def load_snippet(arch: dict[str, Any], backbone_config: dict[str, Any]) -> list[str]:
    """Plain-PyTorch lines that rebuild the network and load `encoder.pt` (features = the encoder's output)."""
    channels = arch["in_channels"]
    if arch["backbone"] == "compact":
        width = backbone_config.get("width", arch["width"])
        blocks = backbone_config.get("blocks", arch["blocks"])
        stride = backbone_config.get("stem_stride", 2)
        return [
            "import torch",
            "from ssl_lightning.models.backbones import BackboneConfig, build_encoder",
            f"encoder = build_encoder(BackboneConfig(name='compact', width={width}, blocks={blocks}, "
            f"stem_stride={stride}), in_channels={channels}, image_size=32)",
            "encoder.body.load_state_dict(torch.load('encoder.pt', weights_only=True))",
        ]
    lines = ["import torch, torchvision", f"model = torchvision.models.{arch['backbone']}()"]
    if arch["stem"] == "cifar":
        lines.append(f"model.conv1 = torch.nn.Conv2d({channels}, 64, 3, 1, 1, bias=False)  # CIFAR stem: 3x3, "
                     "stride 1")
        lines.append("model.maxpool = torch.nn.Identity()  # CIFAR stem: no max-pool")
    elif channels != 3:
        lines.append(f"model.conv1 = torch.nn.Conv2d({channels}, 64, 7, 2, 3, bias=False)  # {channels} input "
                     "channel(s)")
    lines += ["missing, unexpected = model.load_state_dict(torch.load('encoder.pt', weights_only=True), "
              "strict=False)  # missing: fc.* only",
              "model.fc = torch.nn.Identity()  # features; or torch.nn.Linear(model.fc.in_features, classes)"]
    return lines


def load_state(path: Path, what: str, hint: str) -> dict[str, Any]:
    """torch.load of a state dict or checkpoint; an unreadable file is one UserError line naming it."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist; {hint}") from None
    except Exception as error:  # truncated, corrupt or not a torch file: all mean the same to the user
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:160]
        raise UserError(f"{what} {path} is unreadable ({reason}); {hint}") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{what} {path} holds no state dict; {hint}")
    return loaded


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_encoder(state: dict[str, torch.Tensor], folder: Path, card: dict[str, Any],
                  final: Path | None = None) -> Exported:
    """encoder.pt plus card.json (with architecture, input format and load snippet) in `folder`; `final` is
    where the folder will be moved to (the card names that path)."""
    arch = infer_architecture(state)
    backbone_config = dict(card.get("backbone_config") or {})
    path = folder / "encoder.pt"
    write_torch(path, state)
    shown = (final or folder) / path.name
    full = {
        **card, **{k: v for k, v in arch.items() if k not in ("width", "blocks")},
        "file": path.name, "sha256": _sha256(path), "tensors": len(state),
        "input": f"float NCHW, {arch['in_channels']} channel(s), pixels scaled to [-1, 1] (x / 255 * 2 - 1)",
        "load": load_snippet(arch, backbone_config),
        "backbone_init": f"python -m ssl_lightning +experiment=supervised backbone={arch['backbone']}"
                         + (f" backbone.stem={arch['stem']}" if arch["stem"] else "")
                         + f" backbone.init={shown.resolve()}",
    }
    write_json(folder / "card.json", full)
    return Exported(folder, full)


def _store_entry(key: str, caches: list[Path]) -> Path:
    for cache in caches:
        folder = cache / "pretext" / key
        if (folder / "encoder.pt").is_file():
            return folder
    raise UserError(f"pretext store entry {key} not found in {', '.join(str(c / 'pretext') for c in caches)}; "
                    "give --cache <paths.cache> (default outputs/cache)")


def export_store_entry(folder: Path, out: Path, extra: dict[str, Any] | None = None,
                       final: Path | None = None) -> Exported:
    """A pretext store entry (`<cache>/pretext/<key>/`) as `<out>/pretext_<key>/`."""
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        meta = {}
    if not isinstance(meta, dict):  # a damaged meta.json (`null`, a list): the card falls back on the run's fields
        meta = {}
    state = load_state(folder / "encoder.pt", "pretext store encoder",
                       "rerun the cell that trained it (the store retrains a corrupt entry) and export again")
    card = {"kind": "pretext encoder", "method": meta.get("method"), "experiment": meta.get("experiment"),
            "backbone_config": meta.get("backbone_config"), "data": meta.get("data"),
            "pretext_data": meta.get("pretext_data"), "init": meta.get("init"), "epochs": meta.get("epochs"),
            "seed": meta.get("seed"), "store_key": folder.name, "git_commit": meta.get("git_commit"),
            "source": str(folder / "encoder.pt")}
    for name, value in (extra or {}).items():  # what a run that used the entry knows and old entries lack
        if card.get(name) is None:
            card[name] = value
    name = f"pretext_{folder.name}"
    return write_encoder(strip_prefix(state, "body."), out / name, card, final / name if final else None)


def frozen_note(run_dir: Path, results: dict[str, Any], exported: bool) -> str:
    """Why a frozen-probe run has no classifier encoder to export, and where its encoder is (if anywhere)."""
    head = (f"{run_dir}: a frozen-probe run ({results.get('protocol')}) keeps no fine-tuned checkpoint, only its "
            "probe (checkpoints/probe.pt)")
    encoder = results.get("encoder")
    if results.get("pretext_key"):
        where = (f"its encoder is the pretext encoder pretext_{results['pretext_key']}" if exported else
                 f"its encoder is pretext store entry {results['pretext_key']}; export it with --cache <paths.cache>")
    elif encoder == "raw_pixels":
        where = "it probes raw pixels, there is no encoder"
    elif encoder == "pretrained" or results.get("init") not in (None, "random"):
        where = f"its encoder is the backbone.init file {results.get('init')}, unchanged"
    else:
        where = "its encoder was random (never trained) and is not kept"
    return f"{head}; {where}"


def export_run(run_dir: Path, out: Path, caches: list[Path], done: dict[str, Exported], encoder_only: bool = False,
               final: Path | None = None, notes: list[tuple[str, str]] | None = None) -> list[Exported]:
    """The pretext encoder (once per store key across runs) and the classifier's encoder of one run; why a run
    gives less than that is appended to `notes` as (level, line)."""
    notes = [] if notes is None else notes
    try:
        results = json.loads((run_dir / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{run_dir / 'results.json'} is unreadable ({error}); export another run") from None
    if not isinstance(results, dict):
        raise UserError(f"{run_dir / 'results.json'} holds a JSON {type(results).__name__}, not a run's results "
                        "object; export another run or rerun the cell")
    if results.get("status") != "ok":
        notes.append(("warning", f"skipped {run_dir}: the cell did not finish ({results.get('error')})"))
        return []
    config = results.get("config") if isinstance(results.get("config"), dict) else {}
    common = {"experiment": results.get("experiment"), "backbone_config": config.get("backbone"),
              "data": results.get("data"), "pretext_data": results.get("pretext_data"), "init": results.get("init"),
              "seed": results.get("seed"), "git_commit": results.get("git_commit"), "store_key":
              results.get("pretext_key")}
    written: list[Exported] = []
    key = results.get("pretext_key")
    if key and key not in done:
        run_cache = Path(config["paths"]["cache"]) if (config.get("paths") or {}).get("cache") else None
        try:
            entry = _store_entry(key, [c for c in (run_cache, *caches) if c is not None])
        except UserError as error:
            notes.append(("warning", f"{run_dir}: {error}"))
        else:
            method = {"rotation_jitter": "rotation"}.get(common["experiment"], common["experiment"])
            done[key] = export_store_entry(entry, out, {**common, "method": method,
                                                        "epochs": (results.get("epochs") or {}).get("pretext")},
                                           final)
            written.append(done[key])
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    frozen = is_frozen(str(results.get("protocol")), results.get("solver")) and not checkpoint.exists()
    if frozen and not encoder_only:
        notes.append(("note", frozen_note(run_dir, results, bool(key) and key in done)))
    elif not encoder_only:
        saved = load_state(checkpoint, "the run's classifier checkpoint",
                           "rerun the cell, or give --encoder-only to export the pretext encoder alone")
        state = strip_prefix(saved.get("state_dict", saved), "encoder.body.")
        card = {"kind": f"encoder of the tested classifier ({results.get('protocol')}, "
                        f"{100 * float(results.get('fraction', 0)):g}% labels)",
                "method": common["experiment"], **common, "fraction": results.get("fraction"),
                "protocol": results.get("protocol"), "test_acc": results.get("test_acc"),
                "classes": results.get("classes"), "epochs": results.get("epochs"), "source": str(checkpoint)}
        name = f"classifier_{run_dir.name}"
        written.append(write_encoder(state, out / name, card, final / name if final else None))
    return written


def _publish(staging: Path, target: Path, written: list[Exported]) -> list[Exported]:
    """Move every exported folder from the staging folder into `target` (replacing older exports of the same
    name), then remove the staging folder."""
    target.mkdir(parents=True, exist_ok=True)
    for item in written:
        final = target / item.folder.name
        if final.exists():
            shutil.rmtree(final)
        item.folder.replace(final)
        item.folder = final
    shutil.rmtree(staging, ignore_errors=True)
    return written


def _staged(target: Path, write) -> list[Exported]:
    """`write(staging)` into a temporary folder next to `target`, published only when all of it succeeded."""
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        return _publish(staging, target, write(staging))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def export(source: str, out: Path | None, cache: Path, encoder_only: bool = False) -> list[Exported]:
    """Export a run folder, every run below a sweep folder, or one store key; UserError when nothing fits."""
    path = Path(source).expanduser()
    default = (out or Path("outputs/export")).resolve()
    if path.is_dir() and (path / "encoder.pt").is_file() and STORE_KEY.match(path.name):
        return _staged(default, lambda staging: [export_store_entry(path, staging, final=default)])
    if path.is_dir():
        runs = sorted(p.parent for p in path.resolve().rglob("results.json"))
        if not runs:
            raise UserError(f"no results.json below {path}; give a run folder, a sweep folder or a store key")
        target = (out or path / "export").resolve()
        done: dict[str, Exported] = {}
        notes: list[tuple[str, str]] = []

        def write(staging: Path) -> list[Exported]:
            written = [item for run in runs if target not in run.parents and staging not in run.parents
                       for item in export_run(run, staging, [cache], done, encoder_only, target, notes)]
            if not written:  # one line: what each run lacked (the first few)
                more = f"; and {len(notes) - 3} more" if len(notes) > 3 else ""
                shown = "; ".join(text for _, text in notes[:3]) + more
                raise UserError(f"nothing exported: {shown}" if notes else "nothing exported (no finished run)")
            return written

        exported = _staged(target, write)
        for level, text in notes:
            print(f"{level}: {text}", file=sys.stderr)
        return exported
    if STORE_KEY.match(source):
        entry = _store_entry(source, [cache])
        return _staged(default, lambda staging: [export_store_entry(entry, staging, final=default)])
    raise UserError(f"{source!r} is neither a folder nor a pretext store key (16 hex digits); "
                    "give a run folder, a sweep folder or a key from results.json's pretext_key")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m ssl_lightning.export",
                                     description="Write each encoder as a plain state dict with a JSON card.")
    parser.add_argument("source", help="a run folder, a sweep folder, or a pretext store key")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write (default: <folder>/export, or outputs/export for a store key)")
    parser.add_argument("--cache", type=Path, default=Path("outputs/cache"),
                        help="paths.cache of the runs, where the pretext store is (default: outputs/cache)")
    parser.add_argument("--encoder-only", action="store_true",
                        help="export the pretext encoder only (runs without a readable checkpoints/best.ckpt)")
    args = parser.parse_args(argv)
    try:
        written = export(args.source, args.out, args.cache.expanduser().resolve(), args.encoder_only)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot export: {error}", file=sys.stderr)
        return 2
    for item in written:
        print(f"{item.folder}/encoder.pt  {item.card['kind']}, {item.card['backbone']}, "
              f"{item.card['in_channels']} channel(s)")
    if not written:
        print("error: nothing exported (no finished run with a checkpoint or store entry)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
