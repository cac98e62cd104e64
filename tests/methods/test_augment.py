"""Batched augmentation: exact rotations with matching labels, and per-image random parameters everywhere else.

The methods rely on both: RotNet's labels are only meaningful if they name the rotation really applied, and a
batched op that drew one parameter set per batch would silently make every image in it look alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import torch

from ssl_lightning.data.augment import (
    color_jitter,
    random_grayscale,
    random_resized_crop,
    random_shift_flip,
    rotate_all_four,
    simclr_view,
)

Augment = Callable[[torch.Tensor], torch.Tensor]

# Each op with settings that make every image's parameters random (p=1 where a probability exists).
RANDOM_OPS: dict[str, Augment] = {
    "random_resized_crop": lambda x: random_resized_crop(x, scale=(0.2, 1.0)),
    "random_shift_flip": lambda x: random_shift_flip(x),
    "color_jitter": lambda x: color_jitter(x, 0.4, 0.4, 0.4, 0.1, p=1.0),
    "simclr_view": lambda x: simclr_view(x, strength=1.0, crop_min_scale=0.2, grayscale_p=0.2),
}
ALL_OPS: dict[str, Augment] = {**RANDOM_OPS, "random_grayscale": lambda x: random_grayscale(x, p=0.5)}


def textured(batch: int, channels: int, size: int = 16, seed: int = 0,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random [0, 1] images without symmetries, so that any two different transforms give different pixels."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, size, size, generator=generator, dtype=torch.float64).to(dtype)


def repeated(channels: int, copies: int = 16, seed: int = 0) -> torch.Tensor:
    """One image repeated down the batch: any difference between output rows comes from per-image parameters."""
    return textured(1, channels, seed=seed).expand(copies, -1, -1, -1).contiguous()


def distinct_rows(batch: torch.Tensor) -> int:
    return len({tuple(row.flatten().tolist()) for row in batch})


# --- rotate_all_four ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_rotation_labels_name_the_rotation_applied(channels: int) -> None:
    images = textured(5, channels, seed=1)
    rotated, labels = rotate_all_four(images)
    assert rotated.shape == (4 * 5, channels, 16, 16) and labels.shape == (20,)
    assert labels.dtype == torch.long
    matched = torch.zeros(5, 4, dtype=torch.long)
    for row, label in zip(rotated, labels.tolist(), strict=True):
        back = torch.rot90(row, -label, dims=(1, 2))  # undo the rotation the label claims
        sources = [i for i in range(5) if torch.equal(back, images[i])]
        assert len(sources) == 1, "rotating back by the label must recover exactly one original image"
        assert torch.equal(row, torch.rot90(images[sources[0]], label, dims=(1, 2)))
        matched[sources[0], label] += 1
    assert torch.equal(matched, torch.ones(5, 4, dtype=torch.long)), "each image appears once in each rotation"


def test_rotation_is_counter_clockwise_per_label() -> None:
    """A marker in the top-left corner moves to bottom-left, bottom-right, top-right for labels 1, 2, 3."""
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 0, 0] = 1.0
    rotated, labels = rotate_all_four(image)
    corners = {0: (0, 0), 1: (7, 0), 2: (7, 7), 3: (0, 7)}
    for row, label in zip(rotated, labels.tolist(), strict=True):
        assert row[0, corners[label][0], corners[label][1]] == 1.0
        assert row.sum() == 1.0


def test_rotation_does_not_interpolate() -> None:
    """Every output is a permutation of one input's pixels, and each input's pixels appear exactly four times."""
    images = textured(3, 3, seed=2)
    rotated, _ = rotate_all_four(images)
    pixel_sets = Counter(tuple(row.flatten().sort().values.tolist()) for row in rotated)
    assert pixel_sets == Counter({tuple(img.flatten().sort().values.tolist()): 4 for img in images})


def test_rotation_rejects_non_square_images() -> None:
    with pytest.raises(ValueError, match="square"):
        rotate_all_four(torch.rand(2, 1, 8, 10))


# --- random ops: shape, dtype, range, per-image parameters --------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(ALL_OPS))
def test_ops_keep_shape_dtype_and_unit_range(name: str, channels: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    images = textured(32, channels, seed=3, dtype=dtype)
    images[0] = 0.0  # extremes must stay inside [0, 1] too
    images[1] = 1.0
    out = ALL_OPS[name](images)
    assert out.shape == images.shape
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_each_image_gets_its_own_parameters(name: str, channels: int) -> None:
    torch.manual_seed(1)
    images = repeated(channels, copies=16)
    out = RANDOM_OPS[name](images)
    assert distinct_rows(out) >= 12, f"{name} gave {distinct_rows(out)} distinct outputs for 16 copies"
    assert torch.equal(images, repeated(channels, copies=16)), "the input batch must not be modified in place"


def test_grayscale_picks_images_independently() -> None:
    torch.manual_seed(2)
    images = repeated(3, copies=64)
    out = random_grayscale(images, p=0.5)
    gray = (out[:, 0] == out[:, 1]).all(dim=(1, 2)) & (out[:, 1] == out[:, 2]).all(dim=(1, 2))
    unchanged = (out == images).flatten(1).all(dim=1)
    assert torch.equal(gray | unchanged, torch.ones(64, dtype=torch.bool))
    assert 10 < int(gray.sum()) < 54, "about half of the copies should turn grey, not all or none"
    luma = 0.299 * images[0, 0] + 0.587 * images[0, 1] + 0.114 * images[0, 2]
    assert torch.allclose(out[gray][0, 0], luma, atol=1e-6)


def test_grayscale_is_a_no_op_on_one_channel_and_at_p0() -> None:
    grey, rgb = textured(8, 1, seed=4), textured(8, 3, seed=5)
    assert torch.equal(random_grayscale(grey, p=1.0), grey)
    assert torch.equal(random_grayscale(rgb, p=0.0), rgb)


# --- colour jitter -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_jitter_with_p0_is_the_identity(channels: int) -> None:
    images = textured(16, channels, seed=6)
    assert torch.equal(color_jitter(images, 0.8, 0.8, 0.8, 0.2, p=0.0), images)


def test_jitter_at_p_applies_to_a_matching_share_of_images() -> None:
    torch.manual_seed(3)
    images = repeated(3, copies=200)
    out = color_jitter(images, 0.4, 0.4, 0.4, 0.1, p=0.3)
    changed = ~(out == images).flatten(1).all(dim=1)
    assert 30 < int(changed.sum()) < 90


def test_grayscale_jitter_uses_brightness_and_contrast_only() -> None:
    """Saturation and hue do not exist for 1-channel images: asking for them changes nothing and does not fail."""
    images = textured(16, 1, seed=7)
    assert torch.equal(color_jitter(images, 0.0, 0.0, 0.8, 0.5, p=1.0), images)
    torch.manual_seed(4)
    brightness_contrast = color_jitter(images, 0.4, 0.4, 0.0, 0.0, p=1.0)
    torch.manual_seed(4)
    with_colour_settings = color_jitter(images, 0.4, 0.4, 0.8, 0.5, p=1.0)
    assert with_colour_settings.shape == images.shape
    assert torch.equal(brightness_contrast, with_colour_settings)
    assert not torch.equal(brightness_contrast, images)


def test_rgb_saturation_and_hue_change_colour_but_keep_grey_pixels_grey() -> None:
    torch.manual_seed(5)
    colourful = textured(16, 3, seed=8)
    hue_only = color_jitter(colourful, 0.0, 0.0, 0.0, 0.3, p=1.0)
    assert not torch.allclose(hue_only, colourful, atol=1e-3)
    grey = textured(16, 1, seed=9).expand(-1, 3, -1, -1).contiguous()
    saturated = color_jitter(grey, 0.0, 0.0, 0.8, 0.0, p=1.0)
    assert torch.allclose(saturated, grey, atol=1e-6), "saturation must not invent colour in a grey image"
