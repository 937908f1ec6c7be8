"""docs/design.md section 7's quality bars, measured with an attribute judge (`training.judge`).

`evaluate_with_judge` measures on held-out labelled faces:

- whether reconstructions keep the input's attributes (against the true labels),
- whether attribute edits mu +- s * v_A add or remove A in the judge's eyes,
- whether those edits leave the other attributes alone,
- how close generated samples are to real faces: the Frechet distance between Gaussians fitted
  to the judge's pooled features of both (the construction of FID, in the judge's feature space).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from model.codec import Preprocessing
from model.networks import VAEGAN
from training.data import CelebADataset, ImageFolderDataset
from training.evaluate import EVALUATION_OPTIONS, generate_samples
from training.inference import InferenceOptions, ReadableBatches, evaluation_mode
from training.judge import Judge

DEFAULT_EDIT_STRENGTH = 1.5
_TALLIES = (
    "input_hits",
    "reconstruction_hits",
    "add_hits",
    "add_total",
    "remove_hits",
    "remove_total",
    "kept",
    "compared",
)

JUDGE_METRIC_NAMES = (
    "judge_accuracy",
    "reconstruction_agreement",
    "edit_success_add",
    "edit_success_remove",
    "edit_preservation",
    "frechet_distance",
)

JUDGE_METRIC_HELP = {
    "judge_accuracy": "judge verdict on the inputs = true label (the judge's own ceiling)",
    "reconstruction_agreement": "judge verdict on reconstructions = true label",
    "edit_success_add": "label -1 faces the judge sees A on after mu + s*v_A (mean over A)",
    "edit_success_remove": "label +1 faces the judge no longer sees A on after mu - s*v_A",
    "edit_preservation": "other attributes' verdicts unchanged by an edit (vs reconstruction)",
    "frechet_distance": "Frechet distance of judge features, samples vs real images",
}


def check_judge_compatible(
    judge: Judge,
    *,
    data_attributes: tuple[str, ...],
    preprocessing: Preprocessing,
) -> None:
    """Refuse, with a message for the user, a judge that cannot measure this model on this data.

    The data must label every attribute the judge knows (it may label more; those are ignored),
    and the judge must take images of the model's size and channels.
    """
    where = f"judge {judge.path}" if judge.path else "the judge"
    if not data_attributes:
        raise ValueError(
            f"{where} needs labelled data: give a CelebA-layout folder with list_attr_celeba.txt"
        )
    missing = [name for name in judge.attribute_names if name not in data_attributes]
    if missing:
        raise ValueError(
            f"{where} judges attributes the data does not label: {', '.join(missing)} "
            f"(the data labels {', '.join(data_attributes)}); use a judge trained on this kind "
            "of data"
        )
    ours = (judge.preprocessing.channels, judge.preprocessing.image_size)
    theirs = (preprocessing.channels, preprocessing.image_size)
    if ours != theirs:
        raise ValueError(
            f"{where} takes {ours[0]}x{ours[1]}px images but the model makes "
            f"{theirs[0]}x{theirs[1]}px images"
        )


@dataclass
class JudgeEvaluation:
    """Averages in `metrics` (NaN where nothing could be measured), details in `per_attribute`."""

    metrics: dict[str, float]
    per_attribute: dict[str, dict[str, float | int]]
    edited_attributes: tuple[str, ...]
    edit_strength: float
    edit_strengths: dict[str, float]  # the s each edited attribute used
    images: int
    damaged: int


def evaluate_with_judge(
    model: VAEGAN,
    dataset: CelebADataset | ImageFolderDataset,
    judge: Judge,
    *,
    vectors: Mapping[str, Tensor] | None = None,
    edit_strength: float = DEFAULT_EDIT_STRENGTH,
    edit_strengths: Mapping[str, float] | None = None,
    options: InferenceOptions = EVALUATION_OPTIONS,
    seed: int = 0,
) -> JudgeEvaluation:
    """Judge the model's reconstructions, edits and samples on the first `options.count` images.

    Unreadable files among them are skipped. Runs in eval mode without gradients; model and judge
    are moved to `options.device`. Verdicts are the judge's probability > 1/2. Over the images x
    with true labels y (in {-1, +1}):

    judge_accuracy: fraction of (image, attribute) pairs with verdict(x) = y; the best
        reconstruction_agreement can be, as far as this judge can tell.
    reconstruction_agreement: fraction of (image, attribute) pairs with verdict(Dec(mu(x))) = y.
        Measured against the true labels rather than the judge's verdict on x, so a judge error
        on the input is not counted as a correct reconstruction.
    edit_success_add: for each attribute A with a vector v_A (among `vectors` and the judge's
        attributes), the fraction of images with y_A = -1 whose edit Dec(mu + s * v_A) the judge
        sees A on; averaged over those attributes (each attribute weighs the same, however
        common it is).
    edit_success_remove: the same for images with y_A = +1 and the edit Dec(mu - s * v_A),
        success being that the judge no longer sees A.
    edit_preservation: per attribute A, over its add and remove edits and every other judged
        attribute B, the fraction of pairs whose verdict on the edit equals the verdict on the
        unedited reconstruction Dec(mu); averaged over the edited attributes. Attributes tied to
        A by definition (No_Beard and Mustache) or by the data (Wearing_Lipstick and Male) are
        expected to change with it and lower this figure.
    frechet_distance: Frechet distance between Gaussians fitted to the judge's pooled features
        of the real images and of as many samples decoded from z ~ N(0, I) (`generate_samples`
        with `seed`: the same samples `evaluate` measures). 0 means the same mean and
        covariance; it depends on the number of images, so compare figures measured with the
        same count.

    Each attribute's edits use its entry in `edit_strengths` if it has one, else
    `edit_strength`. `per_attribute` holds each attribute's figures, its strength and the number
    of images behind its edit figures (`add_images`, `remove_images`); an edit figure with no
    eligible image is NaN.
    """
    names = judge.attribute_names
    data_names = tuple(dataset.attribute_names)
    check_judge_compatible(judge, data_attributes=data_names, preprocessing=dataset.preprocessing)
    vectors = vectors or {}
    edited = tuple(name for name in names if name in vectors)
    strengths = {name: (edit_strengths or {}).get(name, edit_strength) for name in edited}
    for strength in (edit_strength, *strengths.values()):
        if not math.isfinite(strength) or strength <= 0:
            raise ValueError(f"the edit strength must be a positive number, got {strength}")
    columns = torch.tensor([data_names.index(name) for name in names])
    device = options.device
    batches = ReadableBatches(dataset, options, "judging")
    model.to(device)
    judge.to(device)

    attribute_count = len(names)
    # Per attribute: verdicts equal to the label on inputs and on reconstructions; successful
    # and attempted add / remove edits; other attributes' verdicts kept and compared.
    tally = {key: torch.zeros(attribute_count, dtype=torch.int64) for key in _TALLIES}
    real_features: list[Tensor] = []
    with evaluation_mode(model):
        for batch in batches:
            x = batch.images.to(device)
            truth = (batch.labels[:, columns] > 0).to(device)  # (B, A) bool
            mu = model.encode(x).mu
            real = judge.judge(x)
            real_features.append(real.features.double().cpu())
            tally["input_hits"] += ((real.probabilities > 0.5) == truth).sum(0).cpu()
            reconstructed = judge.verdicts(model.decode(mu))
            tally["reconstruction_hits"] += (reconstructed == truth).sum(0).cpu()
            for name in edited:
                a = names.index(name)
                # Add A where it is absent, remove it where present: one decode per image.
                sign = torch.where(truth[:, a], -1.0, 1.0).unsqueeze(1)
                vector = vectors[name].to(device, mu.dtype)
                verdicts = judge.verdicts(model.decode(mu + strengths[name] * sign * vector))
                adding = ~truth[:, a]
                tally["add_hits"][a] += int((verdicts[:, a] & adding).sum())
                tally["add_total"][a] += int(adding.sum())
                tally["remove_hits"][a] += int((~verdicts[:, a] & ~adding).sum())
                tally["remove_total"][a] += int((~adding).sum())
                others = torch.arange(attribute_count, device=verdicts.device) != a
                tally["kept"][a] += int((verdicts[:, others] == reconstructed[:, others]).sum())
                tally["compared"][a] += int(others.sum()) * len(x)
    images, damaged = batches.images, batches.damaged
    if images == 0:
        raise ValueError(f"none of the first {damaged} images could be read; nothing to evaluate")

    samples = generate_samples(
        model, images, seed=seed, batch_size=options.batch_size, device=device
    )
    sample_features = judge.features(samples.to(device)).double().cpu()
    frechet = frechet_distance(torch.cat(real_features), sample_features)

    per_attribute: dict[str, dict[str, float | int]] = {}
    for a, name in enumerate(names):
        figures: dict[str, float | int] = {
            "judge_accuracy": int(tally["input_hits"][a]) / images,
            "reconstruction_agreement": int(tally["reconstruction_hits"][a]) / images,
        }
        if name in edited:
            figures |= {
                "edit_success_add": _fraction(tally["add_hits"][a], tally["add_total"][a]),
                "edit_success_remove": _fraction(tally["remove_hits"][a], tally["remove_total"][a]),
                "edit_preservation": _fraction(tally["kept"][a], tally["compared"][a]),
                "edit_strength": strengths[name],
                "add_images": int(tally["add_total"][a]),
                "remove_images": int(tally["remove_total"][a]),
            }
        per_attribute[name] = figures
    pairs = images * attribute_count
    metrics = {
        "judge_accuracy": int(tally["input_hits"].sum()) / pairs,
        "reconstruction_agreement": int(tally["reconstruction_hits"].sum()) / pairs,
        **{
            key: _mean([float(per_attribute[name][key]) for name in edited])
            for key in ("edit_success_add", "edit_success_remove", "edit_preservation")
        },
        "frechet_distance": frechet,
    }
    return JudgeEvaluation(
        metrics=metrics,
        per_attribute=per_attribute,
        edited_attributes=edited,
        edit_strength=edit_strength,
        edit_strengths=strengths,
        images=images,
        damaged=damaged,
    )


def _fraction(hits: Tensor, total: Tensor) -> float:
    return int(hits) / int(total) if int(total) > 0 else math.nan


def _mean(values: list[float]) -> float:
    """Mean of the finite values; NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


# --------------------------------------------------------------------------------------------
# Frechet distance


def frechet_distance(first: Tensor, second: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature vectors, (N, D) each.

    Computed in float64 from the sample means and (unbiased) covariances; see
    `gaussian_frechet_distance`. Each set needs at least two vectors.
    """
    if first.ndim != 2 or second.ndim != 2 or first.shape[1] != second.shape[1]:
        raise ValueError(
            f"expected two (N, D) feature sets with the same D, got shapes "
            f"{tuple(first.shape)} and {tuple(second.shape)}"
        )
    if len(first) < 2 or len(second) < 2:
        raise ValueError("a covariance needs at least two feature vectors in each set")
    a, b = first.double(), second.double()
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


def gaussian_frechet_distance(
    mean_1: Tensor, covariance_1: Tensor, mean_2: Tensor, covariance_2: Tensor
) -> float:
    """d^2 = |m1 - m2|^2 + tr(C1) + tr(C2) - 2 tr((C1 C2)^(1/2)), the squared 2-Wasserstein
    distance between N(m1, C1) and N(m2, C2), as FID reports it.

    tr((C1 C2)^(1/2)) is taken as tr((C1^(1/2) C2 C1^(1/2))^(1/2)): the same eigenvalues, but
    of a symmetric positive semi-definite matrix, so `eigh` applies and no complex square root
    or ill-conditioned inverse is involved (covariances of fewer vectors than dimensions are
    singular). Eigenvalues that rounding makes slightly negative are clamped to zero.
    """
    m1, m2 = mean_1.double(), mean_2.double()
    c1, c2 = _symmetric(covariance_1.double()), _symmetric(covariance_2.double())
    root_1 = _psd_sqrt(c1)
    middle = _symmetric(root_1 @ c2 @ root_1)
    trace_root = torch.linalg.eigvalsh(middle).clamp(min=0).sqrt().sum()
    distance = (m1 - m2).pow(2).sum() + c1.trace() + c2.trace() - 2.0 * trace_root
    # Rounding can leave a tiny negative number where the true distance is 0.
    return max(float(distance), 0.0)


def _symmetric(matrix: Tensor) -> Tensor:
    return (matrix + matrix.T) / 2


def _psd_sqrt(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    root: Tensor = (vectors * values.clamp(min=0).sqrt()) @ vectors.T
    return root
