"""Loading encoder weights from the pretext store or a user's file, with a clear error on a mismatch."""

from __future__ import annotations

from pathlib import Path

import torch

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import Encoder


def load_encoder_weights(encoder: Encoder, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `encoder`; a different architecture or channel count is a UserError, not a traceback."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        detail = []
        if wrong_shape:
            k = wrong_shape[0]
            detail.append(f"{len(wrong_shape)} tensor(s) of another shape, e.g. {k}: "
                          f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}")
        if missing:
            detail.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise UserError(
            f"weights from {source} do not fit backbone {encoder.name!r} with {encoder.in_channels} input "
            f"channel(s) ({'; '.join(detail)}); use the backbone and data channels they were trained with"
        )
    encoder.load_state_dict(state)


DOWNLOADING = ("hf-hub:", "hf_hub:", "timm:", "http://", "https://")
WHERE_TO_PUT = ("nothing is downloaded: get the weights yourself (e.g. `huggingface-cli download <repo> --local-dir "
                "~/weights/<name>`, accepting their licence) and pass backbone.init=~/weights/<name> (a folder with "
                "config.json and model.safetensors or pytorch_model.bin) or a .safetensors/.pt/.pth file")


def check_init_value(init: str) -> None:
    """Refuse, in one line, an init that would need the network (a hub name): the files must be on disk."""
    text = str(init)
    if text == "timm" or text.startswith(DOWNLOADING):
        raise UserError(f"backbone.init={text}: {WHERE_TO_PUT}")


def read_state_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict a user handed us, safely (weights_only: no code from the file runs; .safetensors holds
    no code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"backbone.init={path} does not exist; give a state-dict file or random|torchvision")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        except ImportError as error:
            raise UserError(f"reading {path} needs the safetensors package (it comes with timm: pip install "
                            "timm==1.0.31)") from error
        except Exception as error:
            raise UserError(f"cannot read weights from {path} ({type(error).__name__}); is it a complete "
                            ".safetensors file?") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserError(f"cannot read weights from {path} ({type(error).__name__}); save them with "
                        "torch.save(encoder.state_dict(), path)") from error
    for nested in ("state_dict", "model"):  # a training checkpoint's weights (Lightning, DINO/timm scripts)
        if isinstance(state, dict) and isinstance(state.get(nested), dict):
            state = state[nested]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} does not hold a state dict of tensors; save torch.save(model.state_dict(), path)")
    return state
