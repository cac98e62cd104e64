"""Per-sample Gaussian blur and solarisation (BYOL/MoCo/DINO views) against torchvision's per-image reference."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from ssl_lightning.data.augment import blur_with_sigmas, gaussian_blur, simclr_view, solarize
from tests.methods.test_augment import distinct_rows, repeated, textured


@pytest.mark.parametrize("channels", [1, 3])
def test_blur_matches_torchvision_image_by_image(channels: int) -> None:
    images = textured(4, channels, size=20, seed=3, dtype=torch.float64)
    sigmas = torch.tensor([0.3, 0.8, 1.5, 3.0], dtype=torch.float64)
    ours = blur_with_sigmas(images, sigmas, size=7)
    for image, sigma, mine in zip(images, sigmas.tolist(), ours, strict=True):
        reference = TF.gaussian_blur(image, kernel_size=[7, 7], sigma=[sigma, sigma])
        torch.testing.assert_close(mine, reference, rtol=1e-6, atol=1e-9)


def test_blur_draws_a_sigma_per_image_and_keeps_range() -> None:
    images = repeated(3, copies=16).repeat(1, 1, 4, 4)  # 64 px, so the scaled sigmas blur visibly
    blurred = gaussian_blur(images, p=1.0, sigma=(5.0, 40.0))
    assert blurred.shape == images.shape and blurred.dtype == images.dtype
    assert distinct_rows(blurred) == 16
    assert float(blurred.min()) >= 0.0 and float(blurred.max()) <= 1.0
    assert float(blurred.std()) < float(images.std())  # smoothing lowers the pixel variance


def test_blur_probability_is_per_image() -> None:
    torch.manual_seed(0)
    images = repeated(1, copies=2000).repeat(1, 1, 4, 4)
    blurred = gaussian_blur(images, p=0.1, sigma=(10.0, 20.0))
    changed = (blurred - images).abs().flatten(1).amax(dim=1) > 1e-6
    assert 0.07 < float(changed.float().mean()) < 0.13  # BYOL's second view: p = 0.1
    assert torch.equal(gaussian_blur(images, p=0.0), images)


def test_solarize_matches_torchvision_and_is_per_image() -> None:
    images = textured(6, 3, seed=5)
    torch.testing.assert_close(solarize(images, p=1.0), TF.solarize(images, threshold=0.5))
    torch.manual_seed(1)
    many = repeated(3, copies=4000)
    changed = (solarize(many, p=0.2) != many).flatten(1).any(dim=1)
    assert 0.17 < float(changed.float().mean()) < 0.23  # BYOL's second view: p = 0.2
    assert torch.equal(solarize(many, p=0.0), many)


def test_local_crops_have_their_own_size() -> None:
    views = simclr_view(textured(5, 3, size=28), 0.5, 0.05, 0.2, blur_p=0.5, solarize_p=0.2, crop_max_scale=0.4,
                        out_size=(12, 12))
    assert views.shape == (5, 3, 12, 12)
    assert float(views.min()) >= 0.0 and float(views.max()) <= 1.0
