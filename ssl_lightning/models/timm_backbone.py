"""`backbone=timm backbone.model=<timm name>`: any timm model as the encoder, its weights read from disk only.

The model is built with `timm.create_model(name, pretrained=False, num_classes=0, in_chans=..., **kwargs)`
(num_classes=0: the pooled features, a ViT's CLS token or its token mean as `global_pool` says), so timm never
downloads anything; `backbone.init` is a local state dict (.pt/.pth), a .safetensors file or a model folder as
timm/Hugging Face save them (config.json with `architecture`, `model_args`, `pretrained_cfg` + model.safetensors
or pytorch_model.bin). ViTs (timm's vision_transformer, deit, eva modules) get `img_size` and `patch_size`:
random init at the image size with patch 4 up to 32 px (a 7 x 7 grid at 28 px), 8 up to 96 px, 16 above; loaded
weights at the size and patch they were trained at (read from the file's patch embedding and position
embedding), the images resized to it. Loaded weights are normalised with their mean/std (the folder's
config.json, else timm's default for the name); random init keeps the suite's [-1, 1]. ViTs are built with
`dynamic_img_size` and `dynamic_img_pad` (position embeddings interpolated, sides padded to the patch) so DINO's
smaller local crops pass through; backbone.kwargs can turn them off.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ssl_lightning.errors import UserError
from ssl_lightning.models.backbones import AUTO, BackboneConfig, Encoder
from ssl_lightning.models.encoder_state import load_encoder_weights, read_state_file
from ssl_lightning.models.input_contract import IMAGENET_MEAN, IMAGENET_STD, InputContract

log = logging.getLogger(__name__)
VIT_MODULES = ("timm.models.vision_transformer", "timm.models.deit", "timm.models.eva",
               "timm.models.vision_transformer_relpos")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt", "encoder.pt")
STRIPPED_PREFIXES = ("module.", "model.", "backbone.", "body.", "encoder.")
CLASSIFIERS = ("head.", "fc.", "classifier.", "head_dist.")


def _timm():
    try:
        import timm
    except ImportError as error:
        raise UserError("backbone=timm needs the timm package: pip install timm==1.0.31") from error
    return timm


def is_vit(name: str) -> bool:
    """A model that takes `img_size` and `patch_size` (timm's ViT family)."""
    return _timm().models.model_entrypoint(name).__module__ in VIT_MODULES


def auto_patch(size: int) -> int:
    return 4 if size <= 32 else 8 if size <= 96 else 16


@dataclass
class TimmWeights:
    state: dict[str, torch.Tensor]
    source: str
    config: dict[str, Any] = field(default_factory=dict)  # a model folder's config.json


def read_timm_weights(init: str) -> TimmWeights:
    """A state dict, a .safetensors file or a model folder (config.json + weights), read from disk."""
    path = Path(init).expanduser()
    if not path.exists():
        raise UserError(f"backbone.init={init} does not exist; give a .pt/.pth/.safetensors file or a model folder "
                        "with config.json and model.safetensors (or pytorch_model.bin)")
    if path.is_file():
        return TimmWeights(read_state_file(path), str(path))
    files = [path / name for name in WEIGHT_FILES if (path / name).is_file()]
    if not files:
        raise UserError(f"backbone.init={init} is a folder without weights; put one of {', '.join(WEIGHT_FILES)} "
                        "in it (with its config.json)")
    config: dict[str, Any] = {}
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"{path / 'config.json'} is unreadable ({error}); fix or remove it") from error
    return TimmWeights(read_state_file(files[0]), str(files[0]), config if isinstance(config, dict) else {})


def _strip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in STRIPPED_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _vit_geometry(state: dict[str, torch.Tensor]) -> tuple[int | None, int | None]:
    """(patch size, image side) the ViT weights were trained at, from the patch and position embeddings."""
    proj = state.get("patch_embed.proj.weight")
    if proj is None:
        return None, None
    patch = int(proj.shape[-1])
    pos = state.get("pos_embed")
    if pos is None or pos.dim() != 3:
        return patch, None
    tokens = int(pos.shape[1])
    for prefix in range(0, 9):  # class and register tokens
        grid = math.isqrt(tokens - prefix)
        if grid * grid == tokens - prefix:
            return patch, grid * patch
    return patch, None


def _first_conv_channels(state: dict[str, torch.Tensor], name: str) -> int | None:
    cfg = _timm().models.get_pretrained_cfg(name)
    keys = [f"{cfg.first_conv}.weight"] if cfg is not None and cfg.first_conv else []
    keys += ["patch_embed.proj.weight", "conv1.weight", "stem.conv.weight", "stem.0.weight"]
    conv = next((state[key] for key in keys if key in state and state[key].dim() == 4), None)
    return None if conv is None else int(conv.shape[1])


def _default_mean_std(name: str, weights: TimmWeights) -> tuple[tuple[float, ...], tuple[float, ...]]:
    folder = weights.config.get("pretrained_cfg") or {}
    if folder.get("mean") and folder.get("std"):
        return tuple(folder["mean"]), tuple(folder["std"])
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is not None and cfg.mean and cfg.std:
        return tuple(cfg.mean), tuple(cfg.std)
    return IMAGENET_MEAN, IMAGENET_STD


def model_name(config: BackboneConfig, folder_config: dict[str, Any] | None = None) -> str:
    name = config.model or (folder_config or {}).get("architecture")
    if not name:
        raise UserError("backbone=timm needs backbone.model=<timm model name>, "
                        "e.g. backbone.model=vit_small_patch16_224")
    timm = _timm()
    if not timm.is_model(str(name)):
        close = timm.list_models(f"*{str(name).split('_')[0]}*")[:5]
        raise UserError(f"backbone.model={name} is not a timm model" + (f"; e.g. {', '.join(close)}" if close else ""))
    return str(name)


def build_timm(config: BackboneConfig, in_channels: int, image_size: int, contract: InputContract,
               patch_size: int | None = None, extra: dict[str, Any] | None = None) -> Encoder:
    """The timm model at the contract's size (random weights), classifier removed."""
    name = model_name(config)
    kwargs = {**(extra or {}), **dict(config.kwargs)}
    size = contract.resize_to or image_size
    if is_vit(name):
        patch = patch_size or (config.patch_size if config.patch_size != AUTO else auto_patch(size))
        if size % patch and not kwargs.get("dynamic_img_pad"):
            raise UserError(f"backbone.patch_size={patch} does not divide the {size} px input; set backbone.patch_size "
                            "or backbone.input_size (a multiple of the patch size)")
        kwargs.setdefault("img_size", size)
        kwargs.setdefault("patch_size", patch)
        # DINO's local crops and probe-time sizes differ from img_size: position embeddings interpolated per input
        kwargs.setdefault("dynamic_img_size", True)
        kwargs.setdefault("dynamic_img_pad", True)
        contract = InputContract(f"patch{patch}", contract.repeat_channels, contract.resize_to, contract.mean,
                                 contract.std)
    try:
        model = _timm().create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as error:
        raise UserError(f"timm cannot build {name} with {kwargs} ({type(error).__name__}: "
                        f"{' '.join(str(error).split())[:200]}); check backbone.kwargs") from error
    return Encoder(model, int(model.num_features), f"timm:{name}", in_channels, contract)


def _fit_state(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The file's tensors in the model's naming: prefixes stripped, timm's own ViT conversion (position embedding
    resampled to another grid, other ViT layouts), the classifier dropped."""
    state = _strip(state)
    if type(model).__module__ in VIT_MODULES and hasattr(model, "pos_embed"):
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:
            state = checkpoint_filter_fn(state, model)
        except Exception as error:  # a file of another shape: the strict load below names the mismatch
            log.info("timm's ViT checkpoint conversion skipped (%s)", error)
    own = model.state_dict()
    return {f"body.{key}": value for key, value in state.items()
            if key in own or not key.startswith(CLASSIFIERS)}


def build_timm_initialised(config: BackboneConfig, channels: int, image_size: int) -> Encoder:
    """A timm encoder with `backbone.init` (random or a local file/folder) and the weights' input contract."""
    if config.init == "torchvision":
        raise UserError("backbone.init=torchvision is for backbone=resnet18|resnet50; with backbone=timm give a "
                        "local weights file or model folder")
    weights = None if config.init == "random" else read_timm_weights(config.init)
    name = model_name(config, weights.config if weights else None)
    if weights is not None and not config.model:
        config = BackboneConfig(**{**config.__dict__, "model": name})
    extra = {key: value for key, value in ((weights.config.get("model_args") if weights else None) or {}).items()
             if key not in ("num_classes", "in_chans", "pretrained")}  # ours: features only, the data's channels
    vit = is_vit(name)
    state = _strip(weights.state) if weights else {}
    file_patch, file_size = _vit_geometry(state) if vit else (None, None)
    weight_channels = _first_conv_channels(state, name) if weights else None
    repeat = 3 if weight_channels == 3 and channels == 1 else None
    if config.input_size != AUTO:
        size = int(config.input_size)
    else:
        size = file_size or int(extra.get("img_size") or image_size) if weights else image_size
    patch = config.patch_size if config.patch_size != AUTO else (file_patch or extra.get("patch_size"))
    if file_patch and patch != file_patch:  # timm would resample the patch embedding: other weights than the file's
        raise UserError(f"backbone.patch_size={patch} differs from the {file_patch} px patches of backbone.init="
                        f"{config.init}; drop backbone.patch_size (auto uses the weights')")
    if config.normalize == "minus_one_to_one" or (config.normalize == AUTO and weights is None):
        mean, std = None, None
    elif config.normalize == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    else:
        mean, std = _default_mean_std(name, weights)
    contract = InputContract("timm", repeat, size if size != image_size else None, mean, std)
    extra.pop("img_size", None)
    extra.pop("patch_size", None)
    encoder = build_timm(config, repeat or channels, image_size, contract, int(patch) if patch else None, extra)
    if weights is not None:
        load_encoder_weights(encoder, _fit_state(state, encoder.body), weights.source)
        log.info("backbone timm:%s initialised from %s; input contract: %s", name, weights.source,
                 encoder.contract.record())
    return encoder
