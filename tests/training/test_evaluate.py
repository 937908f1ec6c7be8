import copy
import math

import pytest
import torch
import torch.nn.functional as F

from model import build_vaegan, get_preset
from tests.training.conftest import PREPROCESSING
from training.data import CelebADataset, ImageFolderDataset
from training.evaluate import (
    METRIC_NAMES,
    evaluate,
    generate_samples,
    high_frequency_energy,
    prior_latents,
)
from training.inference import InferenceOptions


@pytest.fixture(scope="module")
def model(shared_small64):
    return copy.deepcopy(shared_small64)


@pytest.fixture(scope="module")
def faces(synthetic_celeba) -> CelebADataset:
    return CelebADataset(synthetic_celeba, split="all", preprocessing=PREPROCESSING)


@pytest.fixture(scope="module")
def real_images(faces) -> torch.Tensor:
    return torch.stack([faces.load(i) for i in range(len(faces))])


def test_high_frequency_energy_falls_with_blur_and_is_zero_when_flat(real_images):
    blurred = F.avg_pool2d(real_images, 3, stride=1, padding=1, count_include_pad=False)
    sharp_energy = high_frequency_energy(real_images)
    assert sharp_energy.shape == (len(real_images),)
    assert (high_frequency_energy(blurred) < 0.5 * sharp_energy).all()
    assert (sharp_energy > 0).all()

    flat = torch.full((2, 3, 16, 16), 0.3)
    ramp = torch.linspace(-1, 1, 16).expand(2, 3, 16, 16)
    assert torch.equal(high_frequency_energy(flat), torch.zeros(2))
    torch.testing.assert_close(high_frequency_energy(ramp), torch.zeros(2))
    torch.testing.assert_close(high_frequency_energy(0.5 * real_images), 0.25 * sharp_energy)


def test_evaluate_reports_every_metric_finite(model, synthetic_celeba):
    test_split = CelebADataset(synthetic_celeba, split="test", preprocessing=PREPROCESSING)
    metrics = evaluate(model, test_split, options=InferenceOptions(count=1000, batch_size=4))

    assert set(metrics) == {*METRIC_NAMES, "images", "damaged"}
    assert (metrics["images"], metrics["damaged"]) == (len(test_split), 0)
    assert all(math.isfinite(metrics[name]) for name in METRIC_NAMES)
    assert metrics["reconstruction_mse"] > 0 and metrics["similarity_distance"] > 0
    assert metrics["kl"] > 0
    # A briefly trained, pixel-loss VAE draws blobs: much less fine detail than the faces.
    assert 0 < metrics["sharpness_reconstructions"] < 0.7
    assert 0 < metrics["sharpness_samples"] < 0.7


def test_evaluate_matches_a_hand_computation(model, faces, real_images):
    metrics = evaluate(model, faces, options=InferenceOptions(count=1000, batch_size=16), seed=5)

    with torch.no_grad():
        mu, logvar = model.encode(real_images)
        reconstructions = model.decode(mu)
        samples = model.decode(prior_latents(len(real_images), 128, seed=5))
        features = model.discriminator.similarity_features
        similarity = (features(reconstructions) - features(real_images)).pow(2).mean()
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
    real_energy = high_frequency_energy(real_images).mean()
    expected = {
        "reconstruction_mse": (reconstructions - real_images).pow(2).mean(),
        "similarity_distance": similarity,
        "kl": kl,
        "sharpness_reconstructions": high_frequency_energy(reconstructions).mean() / real_energy,
        "sharpness_samples": high_frequency_energy(samples).mean() / real_energy,
    }
    assert metrics["images"] == 60
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(float(value), rel=1e-4), name


def test_training_lowers_the_reconstruction_error(model, faces):
    untrained = build_vaegan(get_preset("small64"), seed=0)
    before = evaluate(untrained, faces, options=InferenceOptions(count=30, batch_size=30))
    after = evaluate(model, faces, options=InferenceOptions(count=30, batch_size=30))
    assert after["reconstruction_mse"] < 0.8 * before["reconstruction_mse"]


def test_samples_depend_only_on_the_seed(model, faces):
    first = evaluate(model, faces, options=InferenceOptions(count=12, batch_size=5), seed=1)
    again = evaluate(model, faces, options=InferenceOptions(count=12, batch_size=12), seed=1)
    other = evaluate(model, faces, options=InferenceOptions(count=12, batch_size=12), seed=2)
    assert first == pytest.approx(again, rel=1e-5)
    assert other["sharpness_samples"] != pytest.approx(first["sharpness_samples"], rel=1e-5)
    assert other["reconstruction_mse"] == pytest.approx(first["reconstruction_mse"], rel=1e-5)

    samples = generate_samples(model, 5, seed=3, batch_size=2)
    assert samples.shape == (5, 3, 64, 64) and samples.abs().max() <= 1
    torch.testing.assert_close(samples, generate_samples(model, 5, seed=3, batch_size=64))


def test_evaluate_counts_damaged_images_and_reads_plain_folders(model, celeba_copy):
    (celeba_copy / "img_align_celeba" / "000002.jpg").write_bytes(b"\xff\xd8 truncated")
    folder = ImageFolderDataset(celeba_copy / "img_align_celeba", preprocessing=PREPROCESSING)
    metrics = evaluate(model, folder, options=InferenceOptions(count=10, batch_size=4))
    assert (metrics["images"], metrics["damaged"]) == (9, 1)


def test_evaluate_restores_train_mode_and_refuses_nothing_to_read(model, celeba_copy):
    model.train()
    try:
        folder = ImageFolderDataset(celeba_copy / "img_align_celeba", preprocessing=PREPROCESSING)
        evaluate(model, folder, options=InferenceOptions(count=2))
        assert model.training
    finally:
        model.eval()
    for path in sorted((celeba_copy / "img_align_celeba").iterdir())[:3]:
        path.write_bytes(b"")
    broken = ImageFolderDataset(celeba_copy / "img_align_celeba", preprocessing=PREPROCESSING)
    with pytest.raises(ValueError, match="could be read"):
        evaluate(model, broken, options=InferenceOptions(count=1))
