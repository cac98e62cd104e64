"""HED stain jitter (data.hed_jitter): identity at t = 0, the published colour deconvolution otherwise.

The reference below is written independently of ssl_lightning/data/stain.py: one image at a time, pixel by
pixel in numpy, with the Ruifrok & Johnston matrix spelled out (scikit-image's rgb2hed / hed2rgb convention).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ssl_lightning.data.augment import downstream_view, simclr_view
from ssl_lightning.data.stain import hed_jitter, scale_and_shift_stains
from ssl_lightning.errors import UserError

RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])


def reference_jitter(image: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """One C x H x W image: rgb -> optical density -> HED (clipped >= 0) -> a*s + b -> rgb, pixel by pixel."""
    hed_from_rgb = np.linalg.inv(RGB_FROM_HED)
    out = np.empty_like(image)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            rgb = np.maximum(image[:, y, x], 1e-6)
            stains = np.maximum((np.log(rgb) / np.log(1e-6)) @ hed_from_rgb, 0)
            stains = scale * stains + shift
            out[:, y, x] = np.clip(np.exp((stains @ RGB_FROM_HED) * np.log(1e-6)), 0, 1)
    return out


def tissue_like(batch: int = 3, size: int = 6, seed: int = 0) -> torch.Tensor:
    """Pinkish-purple [0, 1] images (and a few saturated pixels) in float64."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.tensor([0.75, 0.45, 0.70], dtype=torch.float64).view(1, 3, 1, 1)
    noise = torch.rand(batch, 3, size, size, generator=generator, dtype=torch.float64) * 0.5 - 0.25
    images = (base + noise).clamp(0, 1)
    images[0, :, 0, 0] = 1.0  # white background
    images[1, :, 0, 0] = 0.0  # black: the 1e-6 clamp
    return images


def test_zero_strength_is_the_identity() -> None:
    images = tissue_like().float()
    assert torch.equal(hed_jitter(images, 0.0), images)
    assert torch.equal(simclr_view(images, 0.0, 1.0, 0.0, hed_jitter=0.0, generator=torch.Generator().manual_seed(3)),
                       simclr_view(images, 0.0, 1.0, 0.0, generator=torch.Generator().manual_seed(3)))


def test_unit_scale_zero_shift_round_trips_colours_inside_the_stain_cone() -> None:
    """a = 1, b = 0 goes through the whole deconvolution and back: a colour made of the three stains returns."""
    stains = torch.tensor([0.3, 0.2, 0.05], dtype=torch.float64)
    rgb = torch.exp(stains @ torch.tensor(RGB_FROM_HED) * np.log(1e-6)).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    out = scale_and_shift_stains(rgb, torch.ones(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    torch.testing.assert_close(out, rgb, rtol=1e-9, atol=1e-9)


def test_matches_the_per_image_numpy_reference_for_fixed_factors() -> None:
    images = tissue_like()
    scale = torch.tensor([[1.1, 0.9, 1.05], [0.8, 1.2, 1.0], [1.0, 1.0, 0.95]], dtype=torch.float64)
    shift = torch.tensor([[0.02, -0.03, 0.0], [-0.05, 0.04, 0.01], [0.1, -0.1, 0.05]], dtype=torch.float64)
    out = scale_and_shift_stains(images, scale, shift)
    for i in range(len(images)):
        expected = reference_jitter(images[i].numpy(), scale[i].numpy(), shift[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-9, atol=1e-12)


def test_random_factors_are_drawn_per_image_and_stain_in_the_published_ranges() -> None:
    """hed_jitter draws scale ~ U(1-t, 1+t) then shift ~ U(-t, t) (B x 3 each) from the generator it is given."""
    t, images = 0.2, tissue_like(batch=4)
    out = hed_jitter(images, t, torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    scale = torch.empty(4, 3, dtype=torch.float64).uniform_(1 - t, 1 + t, generator=replay)
    shift = torch.empty(4, 3, dtype=torch.float64).uniform_(-t, t, generator=replay)
    assert ((scale >= 1 - t) & (scale <= 1 + t)).all() and ((shift >= -t) & (shift <= t)).all()
    assert len({tuple(row.tolist()) for row in scale}) == 4  # per image
    for i in range(4):
        expected = reference_jitter(images[i].numpy(), scale[i].numpy(), shift[i].numpy())
        np.testing.assert_allclose(out[i].numpy(), expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(out, images, atol=1e-3)


def test_float32_training_precision_agrees_with_float64() -> None:
    images = tissue_like()
    scale = torch.tensor([[1.2, 0.8, 1.0]] * 3, dtype=torch.float64)
    shift = torch.tensor([[0.2, -0.2, 0.1]] * 3, dtype=torch.float64)
    wide = scale_and_shift_stains(images, scale, shift)
    narrow = scale_and_shift_stains(images.float(), scale.float(), shift.float())
    torch.testing.assert_close(narrow.double(), wide, atol=2e-5, rtol=0)


def test_grey_images_are_a_one_line_user_error() -> None:
    grey = torch.rand(2, 1, 8, 8)
    with pytest.raises(UserError, match=r"data.hed_jitter=0.05 needs RGB images.*1 channel"):
        hed_jitter(grey, 0.05)
    with pytest.raises(UserError, match="hed_jitter"):
        downstream_view(grey, hed_jitter=0.05)
    assert torch.equal(hed_jitter(grey, 0.0), grey)  # off: grey data stays legal
