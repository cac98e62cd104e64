"""One torch thread per test: on 2 shared cores, 2 OpenMP threads per process oversubscribe the CPU.

Measured here under a load of ~7: 30 tiny training steps took 0.8 s with one thread and 6-20 s with two.
The previous setting is restored afterwards, so other test folders are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
