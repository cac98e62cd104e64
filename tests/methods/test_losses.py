"""NT-Xent against the SimCLR paper's definition, its optimum, and its equivalence under a simulated DDP gather.

The reference below is written straight from Chen et al. (2020), eq. 1 and Algorithm 1, with explicit loops,
so it shares no code or indexing tricks with the batched implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ssl_lightning.methods.losses import nt_xent


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    """Paper definition: samples 2k and 2k+1 are the two views of image k; l(i, j) summed over both orders / 2N."""
    samples = [row for pair in zip(z1.double(), z2.double(), strict=True) for row in pair]
    count = len(samples)

    def sim(u: torch.Tensor, v: torch.Tensor) -> float:
        return float(u @ v / (u.norm() * v.norm()))

    def pair_loss(i: int, j: int) -> float:
        denominator = sum(math.exp(sim(samples[i], samples[k]) / temperature) for k in range(count) if k != i)
        return -math.log(math.exp(sim(samples[i], samples[j]) / temperature) / denominator)

    total = sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(count // 2))
    return total / count


def reference_accuracy(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Share of the 2N samples whose most similar other sample is their own second view."""
    samples = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    hits = 0
    for i in range(2 * n):
        similarities = [(float(samples[i] @ samples[k]), k) for k in range(2 * n) if k != i]
        hits += max(similarities)[1] == (i + n) % (2 * n)
    return hits / (2 * n)


def separated(n: int, dim: int, scale: float = 3.0) -> torch.Tensor:
    """n mutually orthogonal embeddings (random rotation of scaled unit vectors): as well separated as possible."""
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(n), dtype=torch.float64))
    return (scale * basis[:n]).float()


@pytest.mark.parametrize(("n", "dim", "temperature"), [(4, 8, 0.5), (7, 5, 0.1), (16, 32, 1.0)])
def test_matches_the_paper_definition(n: int, dim: int, temperature: float) -> None:
    generator = torch.Generator().manual_seed(n * 100 + dim)
    z1 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    z2 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    loss, accuracy = nt_xent(z1, z2, temperature)
    assert loss.shape == () and accuracy.shape == ()
    assert float(loss) == pytest.approx(reference_nt_xent(z1, z2, temperature), rel=1e-9)
    assert float(accuracy) == pytest.approx(reference_accuracy(z1, z2))


def test_is_invariant_to_the_scale_of_the_embeddings() -> None:
    """Cosine similarity: multiplying an embedding by a positive number changes nothing."""
    generator = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    scale = torch.rand(6, 1, generator=generator) * 10 + 0.1
    assert torch.allclose(nt_xent(z1 * scale, z2, 0.5)[0], nt_xent(z1, z2, 0.5)[0], atol=1e-6)


def test_identical_separated_views_reach_the_analytic_minimum() -> None:
    """Positive similarity 1, all 2N-2 negatives 0: loss = log(1 + (2N-2) exp(-1/t)), far below random views."""
    n, dim, temperature = 8, 16, 0.5
    views = separated(n, dim)
    loss, accuracy = nt_xent(views, views.clone(), temperature)
    expected = math.log(1 + (2 * n - 2) * math.exp(-1 / temperature))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(accuracy) == 1.0
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        random_loss, _ = nt_xent(views, torch.randn(n, dim, generator=generator), temperature)
        assert float(random_loss) > expected + 0.5


def test_accuracy_is_low_for_unrelated_views() -> None:
    generator = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(64, 32, generator=generator), torch.randn(64, 32, generator=generator)
    _, accuracy = nt_xent(z1, z2, 0.5)
    assert float(accuracy) < 0.2


def test_loss_decreases_as_views_align() -> None:
    """Moving the second view from noise towards the first lowers the loss monotonically (what training follows)."""
    views = separated(8, 16)
    noise = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    losses = [float(nt_xent(views, (1 - a) * noise + a * views, 0.5)[0]) for a in (0.0, 0.3, 0.6, 0.9, 1.0)]
    assert losses == sorted(losses, reverse=True)


def simulated_gather(global_view: torch.Tensor, rank: int, n: int):
    """What `all_gather(sync_grads=True)` returns on `rank`: other ranks' rows with this rank's own tensor in its slot.

    Other ranks normalise their rows before gathering (as nt_xent does), and their rows keep their graph to the
    global leaf so that gradients flow back to them, as the gradient-syncing all-gather does.
    """
    others = F.normalize(global_view, dim=1)

    def gather(local: torch.Tensor) -> torch.Tensor:
        assert local.shape[0] == n
        return torch.cat([others[: rank * n], local, others[(rank + 1) * n :]])

    return gather


def per_rank_losses(z1: torch.Tensor, z2: torch.Tensor, world: int, temperature: float) -> list[torch.Tensor]:
    """Each simulated rank holds N rows of both views and sees the global batch through its gather."""
    n = z1.shape[0] // world
    losses = []
    for rank in range(world):
        rows = slice(rank * n, (rank + 1) * n)
        own_view1 = F.normalize(z1[rows], dim=1)
        gather_view1, gather_view2 = simulated_gather(z1, rank, n), simulated_gather(z2, rank, n)

        def gather(local: torch.Tensor, own_view1=own_view1, gather_view1=gather_view1,
                   gather_view2=gather_view2) -> torch.Tensor:
            return (gather_view1 if torch.allclose(local, own_view1) else gather_view2)(local)

        loss, _ = nt_xent(z1[rows], z2[rows], temperature, gather=gather, rank=rank)
        losses.append(loss)
    return losses


@pytest.mark.parametrize("world", [2, 3])
def test_mean_of_rank_losses_equals_the_global_batch_loss(world: int) -> None:
    """DDP averages per-process losses and gradients; that must equal one process on the whole batch."""
    generator = torch.Generator().manual_seed(world)
    n, dim, temperature = 5, 12, 0.3
    z1 = torch.randn(world * n, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(world * n, dim, generator=generator, dtype=torch.float64, requires_grad=True)

    global_loss, global_accuracy = nt_xent(z1, z2, temperature)
    global_grads = torch.autograd.grad(global_loss, (z1, z2))

    ranks = per_rank_losses(z1, z2, world, temperature)
    mean_loss = torch.stack(ranks).mean()
    assert float(mean_loss.detach()) == pytest.approx(float(global_loss.detach()), rel=1e-10)
    assert all(abs(float(r.detach()) - float(global_loss.detach())) > 1e-6 for r in ranks), "ranks see different rows"
    rank_grads = torch.autograd.grad(mean_loss, (z1, z2))
    for rank_grad, global_grad in zip(rank_grads, global_grads, strict=True):
        assert torch.allclose(rank_grad, global_grad, atol=1e-12)
    assert 0.0 <= float(global_accuracy) <= 1.0


def test_rank_offsets_the_positive_and_self_indices() -> None:
    """Rank 1 with a gather must mask its own rows (not rank 0's): identical views then score accuracy 1."""
    views = separated(8, 16)
    gather = simulated_gather(views, rank=1, n=4)
    loss, accuracy = nt_xent(views[4:], views[4:].clone(), 0.5, gather=gather, rank=1)
    assert float(accuracy) == 1.0
    assert float(loss) == pytest.approx(math.log(1 + 14 * math.exp(-2.0)), rel=1e-5)
