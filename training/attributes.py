"""Attribute vectors (Larsen et al. 2016, section 5): directions in latent space that add or
remove a labelled attribute, and the edits they make.

For attribute a, vector = mean mu(x | a = +1) - mean mu(x | a = -1) over labelled images, where
mu is the encoder's posterior mean. An edit decodes mu(x) + s * vector: s > 0 adds the attribute,
s < 0 removes it.

The mean difference also carries whatever comes with the attribute in the data: men rarely wear
lipstick, so "+Male" removes lipstick too. The "controlled" direction holds the other labelled
attributes fixed: a least-squares fit mu ~ b + sum_a y_a w_a over every labelled attribute at once,
whose coefficient 2 w_a is the change from y_a = -1 to +1 at equal other labels. With a single
attribute it is exactly the mean difference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.checkpoint import AttributeVector, CheckpointError, load_checkpoint, save_checkpoint
from model.networks import VAEGAN
from training.data import CelebADataset, ImageFolderDataset
from training.inference import InferenceOptions, ReadableBatches, evaluation_mode

log = logging.getLogger(__name__)

# Where `write_attributes` records which data the vectors came from, inside the header's
# `dataset` section (which describes the data behind the checkpoint's contents).
SOURCE_KEY = "attribute_vectors"
DIRECTIONS = ("mean-difference", "controlled")
# More images than a measurement reads: a rare attribute's vector is the mean of its few
# positive examples, and more images give it more of them.
ATTRIBUTE_OPTIONS = InferenceOptions(count=10_000)


@dataclass(frozen=True)
class AttributeReport:
    """The outcome of `compute_attribute_vectors`."""

    vectors: dict[str, AttributeVector]  # in the data set's attribute order
    skipped: dict[str, tuple[int, int]]  # name -> (positives, negatives), too few of either
    images: int  # images encoded
    damaged: int  # unreadable files skipped


def compute_attribute_vectors(
    model: VAEGAN,
    dataset: CelebADataset | ImageFolderDataset,
    *,
    options: InferenceOptions = ATTRIBUTE_OPTIONS,
    min_examples: int = 10,
    direction: str = "mean-difference",
) -> AttributeReport:
    """Attribute vectors from the first `options.count` readable images of a labelled data set.

    Images are encoded in eval mode, unflipped, to their posterior mean mu (not a sample), and the
    class means are accumulated in float64 so 10,000-image sums lose nothing; vectors are stored
    as float32. An attribute with fewer than `min_examples` positive or negative images gives a
    noisy vector, so it is skipped, logged and listed in `skipped`. The model is moved to
    `options.device` and its train/eval mode is restored afterwards.
    """
    names = tuple(dataset.attribute_names)
    if not names:
        raise ValueError(
            "attribute vectors need labelled images: the data set has no attribute labels "
            "(give a CelebA-layout folder with list_attr_celeba.txt)"
        )
    if min_examples < 1:
        raise ValueError(f"min_examples must be at least 1, got {min_examples}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    device = options.device
    batches = ReadableBatches(dataset, options, "attribute vectors")
    latent_dim = model.config.latent_dim
    model.to(device)
    # Per attribute (rows): the sum of mu over images with the label +1 (or -1), and how many.
    sums = {
        sign: torch.zeros(len(names), latent_dim, dtype=torch.float64, device=device)
        for sign in (1, -1)
    }
    counts = {sign: torch.zeros(len(names), dtype=torch.int64, device=device) for sign in (1, -1)}
    # The normal equations of mu ~ [1, labels] @ W, accumulated batch by batch.
    gram = torch.zeros(len(names) + 1, len(names) + 1, dtype=torch.float64, device=device)
    cross = torch.zeros(len(names) + 1, latent_dim, dtype=torch.float64, device=device)
    with evaluation_mode(model):
        for batch in batches:
            mu = model.encode(batch.images.to(device)).mu.double()  # (B, latent_dim)
            labels = batch.labels.to(device)  # (B, A) in {-1, +1}
            for sign in (1, -1):
                members = (labels == sign).double()  # (B, A)
                sums[sign] += members.T @ mu
                counts[sign] += members.sum(0).long()
            design = torch.cat([torch.ones_like(labels[:, :1]), labels], 1).double()  # (B, 1+A)
            gram += design.T @ design
            cross += design.T @ mu
    images, damaged = batches.images, batches.damaged
    if images == 0:
        raise ValueError(f"none of the first {damaged} images could be read")

    vectors: dict[str, AttributeVector] = {}
    skipped: dict[str, tuple[int, int]] = {}
    positives, negatives = counts[1].tolist(), counts[-1].tolist()
    # (1+A, latent): row 1+a is w_a; the pseudo-inverse copes with attributes that always go
    # together (or never vary), whose separate effects the data cannot tell apart.
    coefficients = torch.linalg.pinv(gram) @ cross
    for row, name in enumerate(names):
        pos, neg = int(positives[row]), int(negatives[row])
        if pos < min_examples or neg < min_examples:
            log.warning(
                "attribute %s skipped: %d positive and %d negative examples among %d images "
                "(need at least %d of each)",
                name,
                pos,
                neg,
                images,
                min_examples,
            )
            skipped[name] = (pos, neg)
            continue
        if direction == "controlled":
            difference = 2.0 * coefficients[1 + row]
        else:
            difference = sums[1][row] / pos - sums[-1][row] / neg
        vectors[name] = AttributeVector(difference.to("cpu", torch.float32), pos, neg)
    return AttributeReport(vectors=vectors, skipped=skipped, images=images, damaged=damaged)


def write_attributes(
    checkpoint_path: str | os.PathLike[str],
    vectors: dict[str, AttributeVector],
    *,
    source: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
    expected_sha256: str | None = None,
) -> Path:
    """Replace a checkpoint's attribute vectors, keeping everything else, and return its path.

    Weights (in their stored precision), preprocessing, step and recipe are carried over
    unchanged; `source` (which data the vectors came from, e.g. {"data": ..., "split": ...,
    "images": n}) is recorded in the header's `dataset` section under "attribute_vectors", beside
    the description of the training data, and `evaluation` entries are added to the header's.
    The file is rewritten atomically by `save_checkpoint`: an interrupted write
    leaves the old file intact.

    With `expected_sha256` (the hash of the file the vectors were computed from), a checkpoint
    that changed in the meantime, for example overwritten by a running training job, is refused:
    its new weights would not match the vectors.
    """
    path = Path(checkpoint_path)
    checkpoint = load_checkpoint(path)
    if expected_sha256 is not None and checkpoint.sha256 != expected_sha256:
        raise CheckpointError(
            path,
            "it changed while the attribute vectors were being computed (overwritten by a "
            "training run?); compute them again from the current file",
        )
    header = checkpoint.header
    dataset = header.dataset if source is None else {**header.dataset, SOURCE_KEY: dict(source)}
    return save_checkpoint(
        path,
        checkpoint.model,
        preprocessing=header.preprocessing,
        step=header.step,
        dataset=dataset,
        recipe=header.recipe,
        evaluation=header.evaluation | (evaluation or {}),
        attributes=vectors,
        parameter_dtype=checkpoint.parameter_dtype,
    )


def attribute_edits(
    model: VAEGAN,
    image: Tensor,
    vectors: Sequence[Tensor],
    strengths: Sequence[float],
    *,
    device: str | torch.device = "cpu",
) -> Tensor:
    """Edits of one (C, S, S) image: for each vector a row of the input followed by
    Dec(mu(x) + s * vector) for each strength s.

    Returns (len(vectors) * (1 + len(strengths)), C, S, S) on the CPU in [-1, 1], row after row,
    ready for `make_grid(..., nrow=1 + len(strengths))`. The model is moved to `device`.
    """
    if image.ndim != 3:
        raise ValueError(f"expected one (C, S, S) image, got shape {tuple(image.shape)}")
    if not vectors or not strengths:
        raise ValueError("give at least one attribute vector and one strength")
    model.to(device)
    scales = torch.tensor(list(strengths), dtype=torch.float32, device=device).unsqueeze(1)
    rows = []
    with evaluation_mode(model):
        mu = model.encode(image.unsqueeze(0).to(device)).mu  # (1, latent_dim)
        for vector in vectors:
            edited = model.decode(mu + scales * vector.to(device))  # (len(strengths), C, S, S)
            rows.append(torch.cat([image.unsqueeze(0).cpu(), edited.cpu()]))
    return torch.cat(rows)
