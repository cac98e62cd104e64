"""`backbone.init`: random weights, torchvision's ImageNet weights, or a state-dict file the user has."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import socket
from pathlib import Path

import torch

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import Encoder
from ssl_lightning.models.encoder_state import load_encoder_weights, read_state_file

log = logging.getLogger(__name__)
DOWNLOAD_TIMEOUT_S = 30


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


def _fit_to_encoder(state: dict[str, torch.Tensor], encoder: Encoder) -> dict[str, torch.Tensor]:
    """Accept a plain torchvision/ResNet state dict: add our `body.` prefix, drop the classifier, and adapt
    the first convolution (RGB filters summed for grey input; kept random when the stem differs)."""
    own = encoder.state_dict()
    if not any(key.startswith("body.") for key in state):
        state = {f"body.{key}": value for key, value in state.items()}
    state = {key: value for key, value in state.items() if not key.startswith("body.fc.")}
    conv = "body.conv1.weight"
    if conv in state and conv in own and state[conv].shape != own[conv].shape:
        if state[conv].shape[2:] == own[conv].shape[2:] and own[conv].shape[1] == 1:
            state[conv] = state[conv].sum(dim=1, keepdim=True)
        else:
            log.info("backbone.init: first convolution %s does not fit the %s stem: kept random",
                     tuple(state[conv].shape), tuple(own[conv].shape))
            state[conv] = own[conv]
    return state


def init_identity(init: str) -> str:
    """What the pretext store key records for an init: a file by its content, not its path."""
    if init in ("random", "torchvision"):
        return init
    path = Path(init).expanduser()
    if not path.is_file():
        raise UserError(f"backbone.init={init} does not exist; give random, torchvision or a state-dict file")
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def apply_init(encoder: Encoder, init: str) -> None:
    if init == "random":
        return
    if init == "torchvision":
        if encoder.name not in ("resnet18", "resnet50"):
            raise UserError(f"backbone.init=torchvision needs backbone=resnet18 or resnet50, not {encoder.name}")
        state = _imagenet_state(encoder.name)
        source = f"torchvision's ImageNet {encoder.name}"
    else:
        state = read_state_file(Path(init))
        source = str(init)
    load_encoder_weights(encoder, _fit_to_encoder(state, encoder), source)
    log.info("backbone initialised from %s", source)
