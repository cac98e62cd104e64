"""`backbone.init`: random weights, torchvision's ImageNet weights, or weights the user has on disk.

Loaded weights bring their input contract (models/input_contract.py): a ResNet keeps the stem its first
convolution was trained with (7x7 stride 2 + max-pool for ImageNet weights, at any image size), is fed ImageNet
mean/std-normalised RGB (grey images repeated to three channels, so the file's conv1 is used unchanged) and, below
64 px, images resized up to 64 px (the ImageNet stem divides the side by 4 before the first block; 64 px leaves
16 x 16, about what the CIFAR stem keeps of a 16 px image, at 5x the pixels of 28 px). A stem that would replace
the loaded first convolution by a random one is refused unless `backbone.discard_loaded_stem=true` asks for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
from pathlib import Path

import torch

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import (
    AUTO,
    RESNETS,
    BackboneConfig,
    Encoder,
    build_encoder,
    check_config,
    cifar_stem_for,
)
from ssl_lightning.models.encoder_state import check_init_value, load_encoder_weights, read_state_file
from ssl_lightning.models.input_contract import IDENTITY, IMAGENET_MEAN, IMAGENET_STD, InputContract

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 30
SMALLEST_IMAGENET_INPUT = 64  # loaded ImageNet-stem weights: smaller images are resized up to this side
CONV1 = "body.conv1.weight"


def _imagenet_state(name: str) -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    weights = {"resnet18": ResNet18_Weights.DEFAULT, "resnet50": ResNet50_Weights.DEFAULT}[name]
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # no network must mean a quick, clear error, not a hang
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # torch.hub's "Downloading: ..." line
            return weights.get_state_dict(progress=False)
    except Exception as error:
        raise UserError(
            f"could not get torchvision's ImageNet weights for {name} ({type(error).__name__}: {error}); "
            "without internet, save them elsewhere and pass backbone.init=/path/to/state_dict.pt"
        ) from error
    finally:
        socket.setdefaulttimeout(previous)


def _prefixed(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A plain torchvision/ResNet state dict in our naming: `body.` prefix, no classifier."""
    if not any(key.startswith("body.") for key in state):
        state = {f"body.{key}": value for key, value in state.items()}
    return {key: value for key, value in state.items() if not key.startswith("body.fc.")}


def _fit_to_encoder(state: dict[str, torch.Tensor], encoder: Encoder) -> dict[str, torch.Tensor]:
    """Adapt the first convolution to the encoder: RGB filters summed for a grey compact encoder, the encoder's
    own (random) one when the stem differs (only reached with backbone.discard_loaded_stem=true)."""
    own = encoder.state_dict()
    state = dict(state)
    for conv in (CONV1, "body.0.weight"):
        if conv in state and conv in own and state[conv].shape != own[conv].shape:
            if state[conv].shape[2:] == own[conv].shape[2:] and own[conv].shape[1] == 1:
                state[conv] = state[conv].sum(dim=1, keepdim=True)
            else:
                log.warning("backbone.init: first convolution %s replaced by a random %s one "
                            "(backbone.discard_loaded_stem=true)", tuple(state[conv].shape), tuple(own[conv].shape))
                state[conv] = own[conv]
    return state


def init_identity(init: str) -> str:
    """What the pretext store key records for an init: a file (or model folder) by its content, not its path."""
    check_init_value(init)
    if init in ("random", "torchvision"):
        return init
    path = Path(init).expanduser()
    if path.is_dir():
        digest = hashlib.sha256()
        for item in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
            digest.update(item.name.encode() + b"|" + item.read_bytes())
        return "sha256:" + digest.hexdigest()[:16]
    if not path.is_file():
        raise UserError(f"backbone.init={init} does not exist; give random, torchvision, a weights file or a "
                        "model folder")
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _exported_here(path: Path) -> bool:
    """Weights this suite trained (an export with its card.json, or a pretext store entry): fed [-1, 1]."""
    return (path.parent / "card.json").is_file() or (path.parent / "meta.json").is_file()


def _mean_std(normalize: str, weights_default: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    chosen = weights_default if normalize == AUTO else normalize
    return (IMAGENET_MEAN, IMAGENET_STD) if chosen == "imagenet" else (None, None)


def _resnet_contract(config: BackboneConfig, channels: int, image_size: int, conv: torch.Tensor | None,
                     normalize_default: str) -> tuple[bool, int, InputContract]:
    """(CIFAR stem?, the body's input channels, contract) for a ResNet with loaded first convolution `conv`."""
    if conv is None:
        cifar = cifar_stem_for(config, image_size)
        loaded_stem = None
    else:
        loaded_stem = "imagenet" if conv.shape[-1] == 7 else "cifar"
        wanted = loaded_stem if config.stem == AUTO else config.stem
        if wanted != loaded_stem and not config.discard_loaded_stem:
            raise UserError(f"backbone.stem={config.stem} would replace the loaded {conv.shape[-1]}x{conv.shape[-1]} "
                            f"first convolution of backbone.init={config.init} by a random one; drop backbone.stem "
                            "(auto keeps the weights' stem) or add backbone.discard_loaded_stem=true")
        cifar = wanted == "cifar"
    kept = conv is not None and (loaded_stem == "cifar") == cifar
    repeat = 3 if kept and channels == 1 and conv.shape[1] == 3 else None
    if config.input_size != AUTO:
        resize = int(config.input_size)
    elif kept and loaded_stem == "imagenet" and image_size < SMALLEST_IMAGENET_INPUT:
        resize = SMALLEST_IMAGENET_INPUT
    else:
        resize = None
    mean, std = _mean_std(config.normalize, normalize_default)
    contract = InputContract("cifar" if cifar else "imagenet", repeat, resize if resize != image_size else None,
                             mean, std)
    if contract.is_identity():
        contract = IDENTITY if conv is None and config.normalize == AUTO else InputContract(contract.stem)
    return cifar, repeat or channels, contract


def build_initialised(config: BackboneConfig, channels: int, image_size: int) -> Encoder:
    """The encoder of `config` with its `backbone.init` weights loaded and their input contract; every bad value
    or unreadable file is a UserError raised here, before anything trains."""
    check_config(config)
    check_init_value(config.init)
    if config.name == "timm":
        from ssl_lightning.models.timm_backbone import build_timm_initialised

        return build_timm_initialised(config, channels, image_size)
    state, source, default = None, "", "minus_one_to_one"
    if config.init == "torchvision":
        if config.name not in RESNETS:
            raise UserError(f"backbone.init=torchvision needs backbone=resnet18 or resnet50, not {config.name}")
        state, source, default = _imagenet_state(config.name), f"torchvision's ImageNet {config.name}", "imagenet"
    elif config.init != "random":
        path = Path(config.init).expanduser()
        state, source = read_state_file(path), str(config.init)
        default = "minus_one_to_one" if _exported_here(path) or any(k.startswith("body.") for k in state) \
            else "imagenet"
    if config.name not in RESNETS:  # compact: the suite's own encoders, its own [-1, 1] scale
        mean, std = _mean_std(config.normalize, "minus_one_to_one")
        resize = None if config.input_size in (AUTO, image_size) else int(config.input_size)
        contract = InputContract(None, None, resize, mean, std)
        encoder = build_encoder(config, channels, image_size,
                                contract=IDENTITY if contract.is_identity() else contract)
    else:
        state = _prefixed(state) if state is not None else None
        conv = state.get(CONV1) if state is not None else None
        cifar, body_channels, contract = _resnet_contract(config, channels, image_size, conv, default)
        encoder = build_encoder(config, body_channels, image_size, cifar_stem=cifar, contract=contract)
    if state is not None:
        load_encoder_weights(encoder, _fit_to_encoder(_prefixed(state), encoder), source)
        log.info("backbone initialised from %s; input contract: %s", source, encoder.contract.record())
    return encoder


def apply_init(encoder: Encoder, init: str) -> None:
    """Load `init` into an encoder built without it (kept for callers that build first; the stem is theirs)."""
    if init == "random":
        return
    if init == "torchvision":
        if encoder.arch not in RESNETS:
            raise UserError(f"backbone.init=torchvision needs backbone=resnet18 or resnet50, not {encoder.arch}")
        state, source = _imagenet_state(encoder.arch), f"torchvision's ImageNet {encoder.arch}"
    else:
        state, source = read_state_file(Path(init)), str(init)
    load_encoder_weights(encoder, _fit_to_encoder(_prefixed(state), encoder), source)
