"""The data order: which images each step trains on, as a pure function of (seed, epoch, rank).

The sampler also owns the horizontal flips, so augmentation is reproducible and a resumed run
sees exactly the images, flipped exactly as, the uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from training.data import Sample


class FlipView(Dataset[Sample | None]):
    """Item i < n is image i; item n + i is image i mirrored. Lets the sampler own the flips,
    so augmentation is reproducible (and resumable) instead of drawn inside worker processes."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return 2 * len(self.base)

    def __getitem__(self, item: int) -> Sample | None:
        index, mirrored = item % len(self.base), item >= len(self.base)
        sample: Sample | None = self.base[index]
        if sample is None or not mirrored:
            return sample
        return sample._replace(image=sample.image.flip(-1))


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded across ranks, starting `skip` items in.

    With `flip`, each image's coin toss comes from the same generator, right after the
    permutation, and picks the mirrored item of a `FlipView`.
    """

    def __init__(
        self, size: int, *, seed: int, epoch: int, flip: bool, rank: int, world: int, skip: int
    ) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch
        self.flip, self.rank, self.world, self.skip = flip, rank, world, skip

    def _items(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        if self.flip:
            order = order + self.size * torch.randint(0, 2, (self.size,), generator=generator)
        per_rank = self.size // self.world
        return order[self.rank * per_rank : (self.rank + 1) * per_rank].tolist()[self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self._items())

    def __len__(self) -> int:
        return max(0, self.size // self.world - self.skip)
