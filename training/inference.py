"""The one way a measurement reads a data set: in order, unflipped, damaged files counted, with
the model in eval mode and a progress bar on stderr.

Every measurement over images (evaluate, attribute vectors, the judge's figures and its decoded
training data) takes an `InferenceOptions` and reads through `ReadableBatches`, so a damaged file
is counted, and a batch of nothing but damaged files skipped, the same way everywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from model.networks import VAEGAN
from training.data import Batch, CelebADataset, ImageFolderDataset, collate_samples


@dataclass(frozen=True)
class InferenceOptions:
    """How a measurement reads its data: the first `count` images, `batch_size` at a time, for
    a model on `device`, decoded by `num_workers` loader processes, with a progress bar or not."""

    count: int
    batch_size: int = 64
    device: str | torch.device = "cpu"
    num_workers: int = 0
    progress: bool = False


@contextmanager
def evaluation_mode(model: VAEGAN) -> Iterator[VAEGAN]:
    """Eval mode (batch norm on its running statistics) without gradients, restored afterwards,
    so that evaluating in the middle of a training run leaves the run as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def inference_loader(
    dataset: CelebADataset | ImageFolderDataset,
    *,
    count: int,
    batch_size: int,
    num_workers: int = 0,
) -> DataLoader[Batch]:
    """Batches of the first `count` images in order, damaged files counted."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    first = Subset(dataset, range(min(count, len(dataset))))
    return DataLoader(
        first,  # type: ignore[arg-type]  # the collate_fn turns optional samples into a Batch
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_samples,
    )


def progress_bar(total: int, description: str, *, enabled: bool) -> tqdm:
    """A bar on stderr, so stdout stays clean for tables and JSON."""
    return tqdm(total=total, desc=description, unit="img", file=sys.stderr, disable=not enabled)


class ReadableBatches:
    """The non-empty batches of `inference_loader`, with a progress bar; once iterated, `images`
    and `damaged` count the images read and the unreadable files skipped."""

    def __init__(
        self,
        dataset: CelebADataset | ImageFolderDataset,
        options: InferenceOptions,
        description: str,
    ) -> None:
        self.loader = inference_loader(
            dataset,
            count=options.count,
            batch_size=options.batch_size,
            num_workers=options.num_workers,
        )
        self.total = min(options.count, len(dataset))
        self.description = description
        self.progress = options.progress
        self.images = 0
        self.damaged = 0

    def __iter__(self) -> Iterator[Batch]:
        with progress_bar(self.total, self.description, enabled=self.progress) as bar:
            for batch in self.loader:
                self.damaged += batch.skipped
                bar.update(len(batch.images) + batch.skipped)
                # A batch whose every file was damaged has no images to measure.
                if batch.images.numel() == 0:
                    continue
                self.images += len(batch.images)
                yield batch
